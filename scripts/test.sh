#!/usr/bin/env bash
# The test command: sets up .venv with the test extras and the RAPIDS jar, then runs
# the whole suite (CI runs exactly this). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
./scripts/bootstrap.sh --test --jars
# Two workers (pytest-xdist), each with its own Spark session and data directories, a test
# file kept on one worker (--dist loadfile: its module fixtures are built once). Most tests wait
# on JVM starts, subprocesses and small Spark jobs, so two at a time on 2 cores roughly halve the
# wall time. MLJOBS_TEST_WORKERS=0 runs them in one process.
workers="${MLJOBS_TEST_WORKERS:-2}"
par=()
[[ "$workers" != 0 ]] && par=(-n "$workers" --dist loadfile)
exec .venv/bin/python -m pytest -q -p no:cacheprovider --timeout 900 "${par[@]}" --durations 25 "${@:-tests}"
