"""Every job's plans, analysed by the real rapids-4-spark jar in explainOnly mode.

Each job runs once through ./spark-submit.sh with the RAPIDS SQL extension (its own JVM:
the extension is a static setting, and Derby allows one JVM per metastore at a time, so
the jobs run one after the other on one data directory: ingest -> tune -> explain, then
detection-metrics, ingest-images, classify, train-text -> predict-text and sql). Every operator or expression the
plugin would leave on the CPU must be listed, with the reason, in ``mljobs.gpu.KNOWN_FALLBACKS``
(or ``EVERY_JOB``), and every listed one must still be reported, so the table of docs/gpu.md
(rendered from those lists; this run's report goes to build/gpu-fallbacks.md and .json)
stays true.
"""
from __future__ import annotations

import json
import time

import pytest
import yaml
from helpers import ROOT, run_cli

from mljobs import jars
from mljobs.gpu import classify, explain_only_conf, parse_fallbacks, render_markdown

RESULTS: dict[str, dict] = {}
REPORT = ROOT / "build" / "gpu-fallbacks"


@pytest.fixture(scope="module")
def rapids_jar():
    return jars.fetch("rapids")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One data directory for the module's jobs; the report is written when they are done."""
    yield tmp_path_factory.mktemp("gpu")
    if RESULTS:
        import pyspark

        about = {"rapids_jar": jars.jar_path("rapids").name, "pyspark": pyspark.__version__,
                 "date": time.strftime("%Y-%m-%d"), "conf": explain_only_conf()}
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.with_suffix(".json").write_text(json.dumps({**about, "jobs": RESULTS}, indent=1) + "\n")
        REPORT.with_suffix(".md").write_text(
            f"explainOnly run of {', '.join(RESULTS)} on {about['date']}: {about['rapids_jar']}, "
            f"PySpark {about['pyspark']}\n\n" + render_markdown({j: r["classified"] for j, r in RESULTS.items()}))


def explain_only_args(jar) -> list[str]:
    args = ["./spark-submit.sh", "--conf", f"spark.jars={jar}"]
    for k, v in explain_only_conf().items():
        args += ["--conf", f"{k}={v}"]
    return args


def run_job(jar, work, job: str, args: list[str]) -> dict:
    """Run one job under explainOnly; its summary, with the classified fallbacks recorded."""
    t0 = time.monotonic()
    proc = run_cli(explain_only_args(jar) + [job, *args, "--data-dir", str(work / "data")])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    fallbacks = parse_fallbacks(proc.stderr)
    RESULTS[job] = {"args": args, "wall_seconds": round(time.monotonic() - t0, 1),
                    "fallback_reports": len(fallbacks), "classified": classify(job, fallbacks)}
    return summary


def check(job: str) -> None:
    res = RESULTS[job]["classified"]
    assert res["unexpected"] == [], f"{job}: fallbacks not in mljobs.gpu.KNOWN_FALLBACKS:\n" + json.dumps(
        res["unexpected"], indent=1)
    assert res["missing"] == [], f"{job}: listed in KNOWN_FALLBACKS but no longer reported (update it and " \
        "docs/gpu.md: python -m mljobs.gpu table):\n" + json.dumps(res["missing"], indent=1)


@pytest.fixture(scope="module")
def ingested(rapids_jar, work, bts_frame):
    """Real March 2013 flights plus one malformed line, so the quarantine path runs too."""
    src = work / "flights.csv"
    bts_frame[bts_frame["Month"] == 3].iloc[:3000].to_csv(src, index=False)
    with open(src, "a") as f:
        f.write("2013,3,3,oops\n")
    return run_job(rapids_jar, work, "ingest", ["--input", str(src), "--table", "gpu.flights"])


@pytest.fixture(scope="module")
def tuned(rapids_jar, work, ingested):
    space = work / "tune.yaml"
    space.write_text(yaml.safe_dump({"search_space": {"xgboost": {
        "max_depth": {"type": "int", "low": 2, "high": 4}, "n_estimators": {"type": "int", "low": 10, "high": 30},
        "colsample_bytree": {"type": "float", "low": 0.5, "high": 1.0}}}}))
    return run_job(rapids_jar, work, "tune", ["--table", "gpu.flights", "--study", "gpu", "--max-trials", "2",
                                              "--max-parallel", "2", "--cv-folds", "2", "--config", str(space)])


@pytest.mark.slow
def test_ingest_has_no_gpu_fallbacks(ingested):
    assert ingested["rows_quarantined"] == 1
    assert ingested["reader"] == "spark"  # --reader auto: Spark's CSV scan (the GPU's) where RAPIDS is loaded
    check("ingest")
    # Nothing of its own: only what every job may report (explainOnly artefacts, metastore commands).
    assert all(k["operator"] in ("AQEShuffleReadExec", "BroadcastHashJoinExec", "CommandResultExec", "LocalTableScanExec")
               for k in RESULTS["ingest"]["classified"]["known"])


@pytest.mark.slow
def test_tune_fallbacks_are_the_known_ones(tuned):
    assert tuned["trials_complete"] == 2 and tuned["mode"] == "parallel"
    check("tune")


@pytest.mark.slow
def test_predict_fallbacks_are_the_known_ones(rapids_jar, work, tuned):
    summary = run_job(rapids_jar, work, "predict", ["--model", tuned["model_dir"], "--table", "gpu.flights",
                                                    "--keep", "Reporting_Airline"])
    assert summary["rows_scored"] > 0 and summary["metrics"]["rows"] > 0
    check("predict")


@pytest.mark.slow
def test_bias_fallbacks_are_the_known_ones(rapids_jar, work, tuned):
    summary = run_job(rapids_jar, work, "bias", ["--model", tuned["model_dir"], "--table", "gpu.flights",
                                                 "--label", "ArrDel15", "--facet", "Reporting_Airline",
                                                 "--group-by", "Origin", "--no-plots"])
    assert summary["status"] == "ok"
    check("bias")


@pytest.mark.slow
def test_explain_fallbacks_are_the_known_ones(rapids_jar, work, tuned):
    summary = run_job(rapids_jar, work, "explain", [
        "--model", tuned["model_dir"], "--table", "gpu.flights", "--sample", "0.5", "--group-by", "Reporting_Airline",
        "--interactions", "20", "--no-plots"])
    assert summary["rows_explained"] > 0
    check("explain")


@pytest.mark.slow
def test_detection_fallbacks_are_the_known_ones(rapids_jar, work):
    from mljobs.datasets.helmets import generate

    plays = work / "plays"
    generate(plays, plays=2, frames=20, seed=3)
    det = plays / "detections.csv"
    lines = det.read_text().splitlines()
    assert lines[0].split(",")[3] == "score"
    bad = lines[2].split(",")
    bad[3] = "x"
    # A duplicate row and an unparseable score: their fields go to det_quarantine as JSON.
    det.write_text("\n".join(lines + [lines[1], ",".join(bad)]) + "\n")
    summary = run_job(rapids_jar, work, "detection-metrics", [
        "--gt", str(plays / "train_labels.csv"), "--pred", str(det), "--snap", str(plays / "snaps.csv"),
        "--nfl-impact", "--max-plots", "1"])
    assert summary["rows_quarantined"] == 2
    check("detection-metrics")


@pytest.fixture(scope="module")
def reviews_table(rapids_jar, work):
    """Every 8th real Amazon review snippet as gpu.reviews, ingested without the check (ingest's own
    run is test_ingest_has_no_gpu_fallbacks')."""
    from mljobs.datasets import reviews

    src = work / "reviews.csv"
    reviews.write_csv(reviews.load("amazon")[::8], src)
    proc = run_cli(["./spark-submit.sh", "ingest", "--mode", "byod", "--input", str(src), "--table", "gpu.reviews",
                    "--label", "label", "--data-dir", str(work / "data")])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return "gpu.reviews"


@pytest.fixture(scope="module")
def text_model(rapids_jar, work, reviews_table):
    summary = run_job(rapids_jar, work, "train-text", ["--table", reviews_table, "--algorithm", "tfidf-lr",
                                                       "--max-trials", "1", "--cv-folds", "2"])
    return summary


@pytest.mark.slow
def test_ingest_images_fallbacks_are_the_known_ones(rapids_jar, work):
    import cv2
    import numpy as np

    for i, label in enumerate(["a", "a", "b", "b"]):
        (work / "images" / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(work / "images" / label / f"{i}.png"), np.full((16, 16), 60 * i, np.uint8))
    (work / "images" / "b" / "empty.png").write_bytes(b"")  # the path that lists and unions empty files
    summary = run_job(rapids_jar, work, "ingest-images", ["--input", str(work / "images"), "--table", "gpu.images",
                                                          "--max-bad-fraction", "0.5"])
    assert summary["images"] == 4 and summary["quarantined_by_reason"] == {"empty file": 1}
    check("ingest-images")


@pytest.mark.slow
def test_classify_fallbacks_are_the_known_ones(rapids_jar, work):
    """classify --input over a few PNGs and an empty file, with a seeded untrained net (no training)."""
    torch = pytest.importorskip("torch")
    import io

    import cv2
    import numpy as np

    from mljobs.models import vision

    images = work / "to-label"
    (images / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(4):
        cv2.imwrite(str(images / "sub" / f"{i}.png"), np.full((16, 16), 60 * i, np.uint8))
    (images / "empty.png").write_bytes(b"")
    torch.manual_seed(0)
    weights = io.BytesIO()
    torch.save(vision.build_net("small-cnn", 2).state_dict(), weights)
    model = vision.save_classifier(work / "classifier", weights.getvalue(), vision.ImageClassifier(
        name="gpu", arch="small-cnn", labels=["a", "b"], image_size=16, mean=[0.5] * 3, std=[0.25] * 3))
    summary = run_job(rapids_jar, work, "classify", ["--model", str(model), "--input", str(images),
                                                     "--out-table", "gpu.labels", "--top-k", "1"])
    assert summary["rows_scored"] == 4 and summary["quarantined_by_reason"] == {"empty file": 1}
    check("classify")


@pytest.mark.slow
def test_train_text_fallbacks_are_the_known_ones(text_model):
    assert text_model["trials_complete"] == 1 and text_model["validation"]["rows"] > 0
    check("train-text")


@pytest.mark.slow
def test_predict_text_fallbacks_are_the_known_ones(rapids_jar, work, reviews_table, text_model):
    summary = run_job(rapids_jar, work, "predict-text", ["--model", text_model["model_dir"], "--table", reviews_table,
                                                         "--id-col", "id", "--keep", "label"])
    assert summary["rows_scored"] > 0
    check("predict-text")


@pytest.mark.slow
def test_sql_and_the_check_itself(rapids_jar, work, ingested):
    run_job(rapids_jar, work, "sql", ["SELECT Reporting_Airline, COUNT(*) AS n, AVG(ArrDel15) AS late FROM gpu.flights "
                                      "GROUP BY Reporting_Airline ORDER BY n DESC"])
    check("sql")
    # The same mechanism does catch a fallback: try_cast has no GPU implementation.
    probe = run_cli(explain_only_args(rapids_jar) + [
        "sql", "SELECT try_cast(Origin AS INT) AS x FROM gpu.flights", "--data-dir", str(work / "data")])
    assert probe.returncode == 0, probe.stderr[-3000:]
    unexpected = classify("sql", parse_fallbacks(probe.stderr))["unexpected"]
    assert unexpected and all("try_cast is not supported" in u["reason"] for u in unexpected), unexpected


LOG = """\
26/11/27 23:04:14 WARN GpuOverrides:
    !Exec <ProjectExec> cannot run on GPU because not all expressions can be replaced
      @Expression <AttributeReference> video#102 could run on GPU
      @Expression <Alias> CASE WHEN ... END AS _raw#145 could run on GPU
        !Expression <StructsToJson> to_json(_fields#121, Some(UTC)) cannot run on GPU because the Expression StructsToJson has been disabled
          @Expression <AttributeReference> _fields#121 could run on GPU
      ! <RDDScanExec> cannot run on GPU because GPU does not currently support the operator class org.apache.spark.sql.execution.RDDScanExec
        @Expression <AttributeReference> _cls#265 could run on GPU
        @Expression <AttributeReference> _obucket#266L could run on GPU
        @Expression <AttributeReference> _offset#267L could run on GPU
26/11/27 23:04:18 WARN GpuOverrides:
  !Exec <AQEShuffleReadExec> cannot run on GPU because Unable to replace CustomShuffleReader due to child not being columnar
"""


def test_parse_and_classify_a_log():
    fbs = parse_fallbacks(LOG)
    assert [(f["operator"], f["columns"], f["causes"]) for f in fbs] == [
        ("ProjectExec", ["video"], ["StructsToJson"]),
        ("StructsToJson", ["_fields"], []),
        ("RDDScanExec", ["_cls", "_obucket", "_offset"], []),
        ("AQEShuffleReadExec", [], []),
    ]
    res = classify("tune", fbs)
    # The projection is reported through its expression; the fold offsets and the
    # artefact are known; the trials-table scan was not reported this time.
    assert [u["operator"] for u in res["unexpected"]] == ["StructsToJson"]
    assert [k["label"] for k in res["known"]] == ["RDDScanExec (_cls, _obucket, _offset)", "AQEShuffleReadExec"]
    assert [m["label"] for m in res["missing"]] == ["RDDScanExec (trial_number, params_json)"]
    table = render_markdown({"tune": res})
    assert "`StructsToJson` **unexpected**" in table and "| tune | `AQEShuffleReadExec` |" in table
