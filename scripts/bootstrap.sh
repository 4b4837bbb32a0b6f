#!/usr/bin/env bash
# Set up everything mljobs needs on a fresh machine: Java 17, a Python 3.11 virtualenv
# (.venv) with the pinned dependencies, and (with --jars) the RAPIDS jar for the
# GPU-readiness test and the s3a jars (hadoop-aws + AWS SDK) for s3:// and s3a:// off EMR.
# Safe to run again: finished steps are skipped.
#
#   ./scripts/bootstrap.sh [--test] [--vision] [--jars]
# --vision adds the image/video jobs' extra (OpenCV, scikit-image, torch, torchvision: about 3 GB, the
# CUDA build PyPI serves for Linux, which runs on CPU too); --test implies it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
extras=""
jars=0
for arg in "$@"; do
  case "$arg" in
    --test) extras="[test,vision]" ;;
    --vision) [[ -n "$extras" ]] || extras="[vision]" ;;
    --jars) jars=1 ;;
    *) echo "usage: $0 [--test] [--vision] [--jars]" >&2; exit 2 ;;
  esac
done

say() { echo "[bootstrap] $*" >&2; }

# Java 17 (Spark 3.5 runs on 8/11/17; EMR 7 uses 17).
if ! command -v java >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
    say "installing OpenJDK 17"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  else
    say "error: Java 17 is required (install openjdk-17-jre-headless)"; exit 1
  fi
fi

PY="${MLJOBS_PYTHON:-}"
if [[ -z "$PY" ]]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
      PY="$cand"; break
    fi
  done
fi
if [[ -z "$PY" ]]; then
  say "error: Python 3.11 is required (set MLJOBS_PYTHON to its path)"; exit 1
fi

if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=".venv/.mljobs-installed$extras"
want="$(cat setup.py constraints.txt 2>/dev/null | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  say "installing Python dependencies${extras:+ with $extras}"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e ".$extras"
  if [[ "$extras" == *test* ]]; then  # the bias tests' oracle, without its unusable s3fs pin (see setup.py)
    .venv/bin/python -m pip install -q --no-deps smclarify==0.5
  fi
  echo "$want" > "$stamp"
fi

# The review snippets of the text jobs: the vaderSentiment sdist from PyPI, sha256-checked, cached.
PYTHONPATH="$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}" .venv/bin/python -m mljobs.datasets.reviews fetch >/dev/null

if [[ $jars -eq 1 ]]; then
  .venv/bin/python -m mljobs.jars fetch rapids >/dev/null
  .venv/bin/python -m mljobs.jars fetch s3a >/dev/null
  .venv/bin/python -m mljobs.jars fetch derby >/dev/null
fi
say "ready: $(.venv/bin/python -c 'import pyspark, sys; print("Python", sys.version.split()[0], "PySpark", pyspark.__version__)')"
