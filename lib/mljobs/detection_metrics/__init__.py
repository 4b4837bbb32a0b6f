"""Detection error analysis: per-frame TP/FP/FN, precision/recall/F1, COCO AP and the
NFL impact metric over Hive tables (``jobs/detection_metrics.py``).

Modules:

* ``boxes``    — the input layouts (NFL ``train_labels.csv`` / ``image_labels.csv``,
  detection files), normalisation and the bad-input checks, all in Spark SQL.
* ``matching`` — the matching engine: plain numpy over many frames at once (greedy
  COCO rule at the user threshold and the ten COCO thresholds, or Hungarian).
* ``ap``       — COCO AP accumulation from the per-detection match flags.
* ``nfl``      — the NFL Impact Detection competition metric.
* ``config``   — ``DetectionConfig``, the job's options (defaults on the fields, validated once).
* ``job``      — the Spark job body as named steps: read, quarantine, match, tables, summary.
* ``plots``    — the stacked TP/FN/FP plot, precision/recall per frame, worst frames.
"""
