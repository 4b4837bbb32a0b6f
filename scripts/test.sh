#!/usr/bin/env bash
# The test command: sets up .venv with the test extras and the RAPIDS jar, then runs
# the whole suite (CI runs exactly this). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
./scripts/bootstrap.sh --test --jars
exec .venv/bin/python -m pytest -q -p no:cacheprovider --timeout 900 "${@:-tests}"
