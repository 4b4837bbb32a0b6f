#!/usr/bin/env bash
# The demo's serving step: python -m mljobs.serve on a free port of 127.0.0.1 for a few seconds,
# /ping, one CSV row (a real April 2013 flight, in the model's feature order) and the same row as
# JSON with labels, then the server is stopped. Usage: scripts/serve-demo.sh MODEL_DIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MODEL="${1:?usage: scripts/serve-demo.sh MODEL_DIR}"
ROW='2013,2,4,1,1545,19805,31703,32575,517,62,1,227,1400'
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv/bin/python -m mljobs.serve --model "$MODEL" --port "$port" --workers 1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 150); do curl -sf "http://127.0.0.1:$port/ping" > /dev/null && break; sleep 0.2; done
echo "GET /ping: $(curl -sf "http://127.0.0.1:$port/ping")"
echo "POST /invocations (text/csv) $ROW -> P(late) = $(curl -sf -H 'Content-Type: text/csv' --data-binary "$ROW" "http://127.0.0.1:$port/invocations")"
echo "POST /invocations?threshold=0.5 (JSON) -> $(curl -sf -H 'Content-Type: application/json' -H 'Accept: application/json' \
    -d "{\"instances\": [[${ROW}]]}" "http://127.0.0.1:$port/invocations?threshold=0.5")"
