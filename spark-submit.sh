#!/usr/bin/env bash
# Run an mljobs job with spark-submit and the properties of one environment.
#
#   ./spark-submit.sh [--env local|emr|emr-gpu] [--dry-run] [--conf K=V ...] JOB [job args]
#
# local (default): embedded Spark + Hive under --data-dir (./.mljobs), library from lib/.
# emr, emr-gpu:    YARN; the library travels as a --py-files zip built under build/.
# --dry-run prints the exact spark-submit command instead of running it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENVS=(local emr emr-gpu)
env_name="${MLJOBS_ENV:-local}"
dry_run=0
extra_conf=()

usage() {
  echo "usage: ./spark-submit.sh [--env local|emr|emr-gpu] [--dry-run] [--conf K=V ...] JOB [job args]" >&2
  echo "jobs: $(list_jobs | tr '\n' ' ')" >&2
}

list_jobs() {
  for f in "$ROOT"/jobs/*.py; do
    n="$(basename "$f" .py)"
    [[ "$n" == _* ]] && continue
    echo "${n//_/-}"
  done
}

while [[ $# -gt 0 ]]; do
  case "$1" in
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
  cmd+=(--conf "$key=$value")
done < "$props"
cmd+=(--conf "spark.mljobs.env=$env_name")
cmd+=(${extra_conf[@]+"${extra_conf[@]}"})

if [[ "$env_name" == local ]]; then
  export PYTHONPATH="$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}"
  if [[ -x "$ROOT/.venv/bin/python" && -z "${PYSPARK_PYTHON:-}" ]]; then
    export PYSPARK_PYTHON="$ROOT/.venv/bin/python"
  fi
  export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
  cmd+=(--driver-java-options "-Dlog4j2.configurationFile=file:$ROOT/conf/log4j2.properties")
else
  version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$ROOT/lib/mljobs/__init__.py")"
  zip_path="$ROOT/build/mljobs-$version.zip"
  if [[ $dry_run -eq 0 || ! -f "$zip_path" ]]; then
    mkdir -p "$ROOT/build"
    (cd "$ROOT/lib" && rm -f "$zip_path" && find mljobs -name '*.py' | sort | zip -q -X "$zip_path" -@)
  fi
  cmd+=(--py-files "$zip_path")
fi
cmd+=("$job_file" "$@")

if [[ $dry_run -eq 1 ]]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
exec "${cmd[@]}"
