#!/usr/bin/env python3
"""Benchmark: train-text's validation accuracy against fastText and scikit-learn on the real
Amazon review snippets, and predict-text's rows/s against a single-process scikit-learn pipeline.

Usage::

    PYTHONPATH=lib .venv/bin/python bench/text.py [--quick] [--rows N] [--trials T] [--repeats R]
        [--algorithms A,B] [--workdir DIR] [--json-out FILE]

Data: the 3,610 labelled Amazon snippets of vaderSentiment 3.3.2 (mljobs.datasets.reviews; the 98
rated exactly 0 have no class). One 80/20 split for every tool: train-text's own stratified
split by content hash (mljobs.train_text.data.split, seed 42), its row ids handed to the others.

* ours: ``train-text`` (in a local[2] SparkSession) for ngram-lr and tfidf-lr, word n-grams 2,
  ``--trials`` random-search trials (6; 2 with --quick), 3-fold CV on the 80 %, the best refit on
  the 80 % and scored on the 20 %; training time = the job's wall time (search + refit).
* fastText (``fasttext-numpy2-wheel``): ``train_supervised(wordNgrams=2)``, its defaults
  otherwise (5 epochs, lr 0.1, dim 100, 2M buckets), on the raw text; one run.
* scikit-learn: ``TfidfVectorizer(ngram_range=(1, 2))`` + ``LogisticRegression(max_iter=1000)``.

Speed: the snippets resampled to N rows (1,000,000; 200,000 with --quick) as a Parquet table;
``predict-text`` with the ngram-lr model writes the predictions table (rows/s over that stage);
the scikit-learn pipeline (its TF-IDF + LR fitted on the same 80 %) ``predict_proba`` on the
same N texts in this one process (the texts already in memory); ``--repeats R`` runs each R
times, alternating, and compares the medians (the first Spark run pays the JVM's warm-up). Rows
per CPU second of each are reported too (``ratio_2_idle_cores_estimate``: what the ratio would be
on 2 idle cores, for runs on a machine shared with other work). Human-readable lines go to
stderr; the LAST stdout line is JSON.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "bench"))
from benchlib import cpu_tree_seconds, emit, local_spark, machine_info, parquet_table, write_parquet  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def log(msg: str) -> None:
    print(f"[bench-text] {msg}", file=sys.stderr, flush=True)


def scores(y_true, y_pred) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
            "macro_f1": round(float(f1_score(y_true, y_pred, average="macro")), 4)}


def the_split(spark, rows: pd.DataFrame, seed: int = 42) -> set[str]:
    """The ids of train-text's validation rows (the same function and seed as the job)."""
    from mljobs.models.text import TEXT
    from mljobs.train_text.data import LABEL, split, with_label_index

    df = spark.createDataFrame(rows.rename(columns={"text": TEXT, "label": LABEL})[["id", TEXT, LABEL]])
    _, validation = split(with_label_index(df, sorted(rows.label.unique())), 3, seed)
    return {r.id for r in validation.select("id").collect()}


def fasttext_run(train: pd.DataFrame, valid: pd.DataFrame, work: Path) -> dict:
    import fasttext

    path = work / "fasttext.train.txt"
    path.write_text("".join(f"__label__{lab} {' '.join(t.split())}\n" for t, lab in zip(train.text, train.label)))
    t0 = time.monotonic()
    model = fasttext.train_supervised(str(path), wordNgrams=2, verbose=0, thread=2)
    seconds = time.monotonic() - t0
    pred = [model.predict(" ".join(t.split()))[0][0].removeprefix("__label__") for t in valid.text]
    return {**scores(valid.label, pred), "train_seconds": round(seconds, 2)}


def sklearn_pipeline():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(max_iter=1000))


def sklearn_run(train: pd.DataFrame, valid: pd.DataFrame) -> tuple[dict, object]:
    pipe = sklearn_pipeline()
    t0 = time.monotonic()
    pipe.fit(train.text, train.label)
    seconds = time.monotonic() - t0
    return {**scores(valid.label, pipe.predict(valid.text)), "train_seconds": round(seconds, 2)}, pipe


def ours(spark, algorithm: str, trials: int, work: Path) -> dict:
    from mljobs.train_text.config import TrainTextConfig
    from mljobs.train_text.job import run

    cfg = TrainTextConfig(table="bench.reviews", algorithm=algorithm, max_trials=trials, cv_folds=3,
                          study=f"bench-{algorithm}-{time.time_ns()}", model_dir=str(work / f"model-{algorithm}"),
                          plots_dir=str(work / "plots"))
    t0 = time.monotonic()
    s = run(spark, cfg, lambda m: log(f"  {algorithm}: {m}"))
    v = s["validation"]
    return {"accuracy": round(v["accuracy"], 4), "macro_f1": round(v["macro_f1"], 4),
            "train_seconds": round(time.monotonic() - t0, 2), "best_params": s["best_params"],
            "cv_value": s["best_value"], "rows_validation": v["rows"], "model_dir": s["model_dir"]}


def median(values: list[float]) -> float:
    return sorted(values)[(len(values) - 1) // 2]  # the lower middle for even counts


def speed(spark, rows: pd.DataFrame, n: int, model_dir: str, pipe, work: Path, repeats: int = 1) -> dict:
    """predict-text's scoring stage and scikit-learn's predict_proba on the same n texts, each
    ``repeats`` times (the ratio is of the medians; the first Spark run includes JIT warm-up).
    Also rows per CPU second of each (over the whole job: this process, the driver JVM and its
    Python workers; scikit-learn: this process over predict_proba):
    on a machine shared with other work, 2 x ours / theirs estimates the ratio on 2 idle cores."""
    from mljobs.predict_text.config import PredictTextConfig
    from mljobs.predict_text.job import run

    idx = np.random.default_rng(7).integers(0, len(rows), n)
    big = pd.DataFrame({"row": np.arange(n), "text": rows.text.to_numpy()[idx]})
    write_parquet(big, work / "big", 8)
    parquet_table(spark, "bench.reviews_big", work / "big")
    cfg = PredictTextConfig(model=model_dir, table="bench.reviews_big", id_col="row", out_table="bench.text_predictions")
    texts, ours, sk, ours_cpu, sk_cpu = big.text.tolist(), [], [], [], []
    for _ in range(repeats):
        c0 = cpu_tree_seconds()
        ours.append(run(spark, cfg, lambda m: log(f"  predict-text: {m}")))
        ours_cpu.append(n / (cpu_tree_seconds() - c0))
        t0, c0 = time.monotonic(), time.process_time()
        pipe.predict_proba(texts)
        sk.append(n / (time.monotonic() - t0))
        sk_cpu.append(n / (time.process_time() - c0))
    mid = sorted(ours, key=lambda s: s["rows_per_s"])[(repeats - 1) // 2]
    out = {"rows": n, "repeats": repeats, "ours_rows_per_s": mid["rows_per_s"], "ours_score_seconds": mid["score_seconds"],
           "ours_job_seconds": mid["seconds"], "ours_rows_per_s_each": [s["rows_per_s"] for s in ours],
           "sklearn_rows_per_s": round(median(sk), 1), "sklearn_rows_per_s_each": [round(r, 1) for r in sk],
           "ratio_vs_sklearn": round(mid["rows_per_s"] / median(sk), 3), "target_ratio": 0.8}
    out.update({"ours_rows_per_cpu_s": round(median(ours_cpu), 1), "sklearn_rows_per_cpu_s": round(median(sk_cpu), 1),
                "ratio_2_idle_cores_estimate": round(2 * median(ours_cpu) / median(sk_cpu), 3)})
    return out


def main(argv=None) -> int:
    from mljobs.datasets import reviews

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 trials, 200,000 rows to label (< 5 min on 2 cores)")
    ap.add_argument("--rows", type=int, help="rows to label (default 1,000,000; 200,000 with --quick)")
    ap.add_argument("--trials", type=int, help="train-text trials per algorithm (default 6; 2 with --quick)")
    ap.add_argument("--algorithms", default="ngram-lr,tfidf-lr")
    ap.add_argument("--repeats", type=int, default=1, help="predict-text and scikit-learn runs each; medians compared")
    ap.add_argument("--workdir", help="where the tables, models and Spark data go (default: a temp dir)")
    ap.add_argument("--json-out", help="also write the JSON line here")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    n = args.rows or (200_000 if args.quick else 1_000_000)
    trials = args.trials or (2 if args.quick else 6)
    t_all = time.monotonic()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-text-"))
    rows = pd.DataFrame([r for r in reviews.load("amazon") if r["label"]])
    spark = local_spark("bench-text", work)
    spark.createDataFrame(rows[["id", "text", "rating", "label"]]).write.mode("overwrite").saveAsTable("bench.reviews")
    valid_ids = the_split(spark, rows)
    train, valid = rows[~rows.id.isin(valid_ids)], rows[rows.id.isin(valid_ids)]
    log(f"{len(rows):,} labelled snippets: {len(train):,} training, {len(valid):,} validation")
    ft = fasttext_run(train, valid, work)
    log(f"fastText: {ft}")
    sk, pipe = sklearn_run(train, valid)
    log(f"scikit-learn TF-IDF + LR: {sk}")
    mine = {}
    for algorithm in args.algorithms.split(","):
        mine[algorithm] = ours(spark, algorithm, trials, work)
        log(f"train-text {algorithm}: {mine[algorithm]}")
    fast = speed(spark, rows, n, mine[next(iter(mine))]["model_dir"], pipe, work, args.repeats)
    log(f"predict-text: {fast}")
    spark.stop()
    best = max(mine.values(), key=lambda r: r["accuracy"])
    out = {"bench": "text", "mode": "quick" if args.quick else "full", "rows_labelled": len(rows),
           "rows_train": len(train), "rows_validation": len(valid), "trials": trials, "spark_master": "local[2]",
           "ours": mine, "fasttext": ft, "sklearn_tfidf_lr": sk,
           "best_ours_accuracy_minus_fasttext": round(best["accuracy"] - ft["accuracy"], 4),
           "best_ours_accuracy_minus_sklearn": round(best["accuracy"] - sk["accuracy"], 4),
           "predict": fast, "machine": machine_info(), "seconds": round(time.monotonic() - t_all, 1)}
    emit(out, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
