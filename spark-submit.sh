#!/usr/bin/env bash
# Run an mljobs job with spark-submit and the properties of one environment.
#
#   ./spark-submit.sh [--env local|emr|emr-gpu] [--artifacts s3://BUCKET/PREFIX] [--dry-run] [--conf K=V ...] JOB [job args]
#   ./spark-submit.sh package [--out DIR] [--no-env]      # wheel, --py-files zip, conf and env archives
#
# local (default): embedded Spark + Hive under --data-dir (./.mljobs), library from lib/.
# emr, emr-gpu:    YARN cluster mode. With --artifacts (or $MLJOBS_ARTIFACTS), everything comes
#                  from that S3 prefix (as uploaded by `python -m mljobs.emr upload`): the job file,
#                  the --py-files zip, and the dependency and conf archives. Without it, the
#                  checkout's files are used (on the primary node, with a python3.11 that has the
#                  dependencies) and the zip is built under build/.
# --dry-run prints the exact spark-submit command instead of running it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENVS=(local emr emr-gpu)
env_name="${MLJOBS_ENV:-local}"
artifacts="${MLJOBS_ARTIFACTS:-}"
# Must match mljobs.emr.ENV_ARCHIVE (the archive scripts/package.sh builds).
ENV_ARCHIVE=mljobs-env-py311-linux-x86_64.tar.gz
artifacts_flag=0
dry_run=0
extra_conf=()

usage() {
  echo "usage: ./spark-submit.sh [--env local|emr|emr-gpu] [--artifacts s3://BUCKET/PREFIX] [--dry-run] [--conf K=V ...] JOB [job args]" >&2
  echo "       ./spark-submit.sh package [--out DIR] [--zip-only] [--no-env]" >&2
  echo "jobs: $(list_jobs | tr '\n' ' ')" >&2
}

list_jobs() {
  for f in "$ROOT"/jobs/*.py; do
    n="$(basename "$f" .py)"
    [[ "$n" == _* ]] && continue
    echo "${n//_/-}"
  done
}

if [[ "${1:-}" == package ]]; then
  shift
  exec "$ROOT/scripts/package.sh" "$@"
fi

while [[ $# -gt 0 ]]; do
  case "$1" in
    --artifacts) [[ $# -ge 2 ]] || { usage; exit 2; }; artifacts="$2"; artifacts_flag=1; shift 2 ;;
    --artifacts=*) artifacts="${1#--artifacts=}"; artifacts_flag=1; shift ;;
    --env) [[ $# -ge 2 ]] || { usage; exit 2; }; env_name="$2"; shift 2 ;;
    --env=*) env_name="${1#--env=}"; shift ;;
    --dry-run) dry_run=1; shift ;;
    --conf) [[ $# -ge 2 ]] || { usage; exit 2; }; extra_conf+=(--conf "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --*) echo "error: unknown option $1" >&2; usage; exit 2 ;;
    *) break ;;
  esac
done

valid_env=0
for e in "${ENVS[@]}"; do [[ "$e" == "$env_name" ]] && valid_env=1; done
if [[ $valid_env -eq 0 ]]; then
  echo "error: unknown environment '$env_name'; valid: ${ENVS[*]}" >&2
  exit 2
fi

if [[ "$env_name" == local ]]; then
  if [[ $artifacts_flag -eq 1 ]]; then
    echo "error: --artifacts is for --env emr or emr-gpu (local runs use the checkout)" >&2; exit 2
  fi
  artifacts=""  # an exported MLJOBS_ARTIFACTS is for cluster runs only
fi
if [[ -n "$artifacts" ]]; then
  if [[ ! "$artifacts" =~ ^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/-]*)?$ ]]; then
    echo "error: --artifacts must be s3://BUCKET[/PREFIX], got '$artifacts'" >&2; exit 2
  fi
  artifacts="${artifacts%/}"
fi

if [[ $# -lt 1 ]]; then
  echo "error: no job given" >&2; usage; exit 2
fi
job="$1"; shift
job_file="$ROOT/jobs/${job//-/_}.py"
if [[ "$job" == _* || ! -f "$job_file" ]]; then
  echo "error: unknown job '$job'; valid: $(list_jobs | tr '\n' ' ')" >&2
  exit 2
fi

if [[ -n "${SPARK_HOME:-}" && -x "$SPARK_HOME/bin/spark-submit" ]]; then
  submit="$SPARK_HOME/bin/spark-submit"
elif [[ -x "$ROOT/.venv/bin/spark-submit" ]]; then
  submit="$ROOT/.venv/bin/spark-submit"
elif command -v spark-submit >/dev/null 2>&1; then
  submit="$(command -v spark-submit)"
else
  echo "error: spark-submit not found; run ./scripts/bootstrap.sh (creates .venv) or set SPARK_HOME" >&2
  exit 2
fi

cmd=("$submit")
props="$ROOT/conf/$env_name.properties"
while IFS= read -r line || [[ -n "$line" ]]; do
  line="${line#"${line%%[![:space:]]*}"}"
  [[ -z "$line" || "$line" == \#* ]] && continue
  key="${line%%[[:space:]=]*}"
  value="${line#"$key"}"
  value="${value#"${value%%[![:space:]=]*}"}"
  # The shipped environment's python replaces the cluster's python3.11 of the properties file.
  if [[ -n "$artifacts" && ( "$key" == spark.yarn.appMasterEnv.PYSPARK_PYTHON || "$key" == spark.executorEnv.PYSPARK_PYTHON ) ]]; then
    continue
  fi
  cmd+=(--conf "$key=$value")
done < "$props"
cmd+=(--conf "spark.mljobs.env=$env_name")
if [[ -n "$artifacts" ]]; then
  # The official recipe: --archives env.tar.gz#environment unpacks into each container's
  # working directory, so the relative path works for the driver (cluster mode) and executors.
  cmd+=(--conf "spark.yarn.appMasterEnv.PYSPARK_PYTHON=./environment/bin/python")
  cmd+=(--conf "spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python")
  cmd+=(--conf "spark.yarn.appMasterEnv.MLJOBS_CONF_DIR=./mljobs-conf")
fi
cmd+=(${extra_conf[@]+"${extra_conf[@]}"})

if [[ "$env_name" == local ]]; then
  export PYTHONPATH="$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}"
  if [[ -x "$ROOT/.venv/bin/python" && -z "${PYSPARK_PYTHON:-}" ]]; then
    export PYSPARK_PYTHON="$ROOT/.venv/bin/python"
  fi
  export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
  cmd+=(--driver-java-options "-Dlog4j2.configurationFile=file:$ROOT/conf/log4j2.properties")
  # S3 off EMR is the s3a connector: hadoop-aws + AWS SDK jars for the bundled Hadoop, from the
  # jar cache (downloaded once from Maven Central), added only when an argument names S3.
  for arg in "$@" ${extra_conf[@]+"${extra_conf[@]}"}; do
    if [[ "$arg" == *s3://* || "$arg" == *s3a://* ]]; then
      py="$ROOT/.venv/bin/python"; [[ -x "$py" ]] || py=python3
      if [[ $dry_run -eq 1 ]]; then s3a_jars="$("$py" -m mljobs.jars path s3a)"; else s3a_jars="$("$py" -m mljobs.jars fetch s3a)"; fi
      cmd+=(--jars "$s3a_jars")
      break
    fi
  done
else
  version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$ROOT/lib/mljobs/__init__.py")"
  if [[ -n "$artifacts" ]]; then
    cmd+=(--py-files "$artifacts/mljobs-$version.zip")
    cmd+=(--archives "$artifacts/$ENV_ARCHIVE#environment,$artifacts/mljobs-conf-$version.tar.gz#mljobs-conf")
    job_file="$artifacts/jobs/$(basename "$job_file")"
  else
    zip_path="$ROOT/build/mljobs-$version.zip"
    if [[ $dry_run -eq 0 || ! -f "$zip_path" ]]; then
      "$ROOT/scripts/package.sh" --zip-only --out "$ROOT/build" >/dev/null
    fi
    cmd+=(--py-files "$zip_path")
  fi
fi
cmd+=("$job_file" "$@")

if [[ $dry_run -eq 1 ]]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
exec "${cmd[@]}"
