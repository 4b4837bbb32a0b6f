#!/usr/bin/env bash
# Run an mljobs job with spark-submit and the properties of one environment.
#
#   ./spark-submit.sh [--env local|emr|emr-gpu] [--artifacts s3://BUCKET/PREFIX] [--dry-run] [--conf K=V ...]
#                     [--metastore server|embedded|jdbc:...|thrift://...] JOB [job args]
#   ./spark-submit.sh metastore start|stop|status [--data-dir DIR] [--port N]   # the local metastore server
#   ./spark-submit.sh package [--out DIR] [--zip-only] [--no-env]      # wheel, --py-files zip, conf and env archives
#
# local (default): embedded Spark + Hive under --data-dir (./.mljobs), its metastore a local server
#                  that the first job starts (docs/metastore.md), library from lib/.
# emr, emr-gpu:    YARN cluster mode. With --artifacts (or $MLJOBS_ARTIFACTS), everything comes
#                  from that S3 prefix (as uploaded by `python -m mljobs.emr upload`); without it,
#                  the checkout's files are used and the --py-files zip is built under build/.
# --dry-run prints the exact spark-submit command instead of running it.
# The command is built by lib/mljobs/submit.py, the same code that builds the EMR steps.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ "${1:-}" == package ]]; then
  shift
  exec "$ROOT/scripts/package.sh" "$@"
fi
py="$ROOT/.venv/bin/python"
[[ -x "$py" ]] || py="$(command -v python3.11 || command -v python3)"
exec "$py" -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); from mljobs.submit import main; sys.exit(main())' \
  "$ROOT/lib" "$@"
