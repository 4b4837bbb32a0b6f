"""examples/sparkmagic.ipynb, run the way SparkMagic runs it, so the notebook cannot rot.

- ``%%configure -f``: checked, not sent anywhere: valid JSON, Livy session keys only, exactly
  what ``python -m mljobs.emr livy`` prints, artefact names as scripts/package.sh builds them,
  the properties of a spark-submit step on EMR.
- plain cells: run "on the cluster", in one namespace whose ``spark`` is the suite's session.
- ``%%sql [-o NAME] [-q] [-m take|sample] [-n N] [-r F]``: ``spark.sql`` on that session; with
  ``-o`` the pandas result (at most N rows, as SparkMagic takes them) is bound in the *local*
  namespace only.
- ``%%local``: run in the local namespace (matplotlib's Agg backend).
- any other magic, a line magic or a shell escape fails the test.

The cell tagged ``parameters`` is run, then overridden with small values (as papermill would).
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import shlex
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, run_cli

NOTEBOOK = ROOT / "examples" / "sparkmagic.ipynb"
# The request body of Livy's POST /sessions (Livy REST API documentation).
LIVY_SESSION_KEYS = {"kind", "proxyUser", "jars", "pyFiles", "files", "driverMemory", "driverCores", "executorMemory",
                     "executorCores", "numExecutors", "archives", "queue", "name", "conf", "heartbeatTimeoutInSecond"}
# SparkMagic's defaults for %%sql (default_maxrows, default_samplemethod, default_samplefraction).
SQL_MAXROWS, SQL_SAMPLEFRACTION = 2500, 0.1
MAGICS = ("configure", "sql", "local")
SMALL = {
    "MONTHS": [1],
    "TRIALS": 2,
    "PARALLEL": 2,
    "CV_FOLDS": 2,
    "SEARCH_SPACE": {"max_depth": {"type": "int", "low": 2, "high": 3},
                     "n_estimators": {"type": "int", "low": 5, "high": 10},
                     "colsample_bytree": {"type": "float", "low": 0.5, "high": 1.0}},
    "EXPLAIN_SAMPLE": 0.02,
    "PLAYS": 2,
    "FRAMES_PER_PLAY": 20,
    "REVIEWS_EVERY": 6,
    "TEXT_TRIALS": 2,
    "IMAGE_EPOCHS": 2,
    "IMAGE_SIZE": 16,
    "VIDEO_FRAMES": 12,
}


def load_notebook() -> dict:
    return json.loads(NOTEBOOK.read_text())


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def source(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def split_magic(text: str) -> tuple[str | None, str, str]:
    """(cell magic or None, its arguments, the body)."""
    first, _, rest = text.partition("\n")
    if first.startswith("%%"):
        name, _, args = first[2:].partition(" ")
        return name, args.strip(), rest
    return None, "", text


def configure_body(nb: dict) -> tuple[str, dict]:
    cells = [c for c in code_cells(nb) if split_magic(source(c))[0] == "configure"]
    assert len(cells) == 1, "the notebook must have exactly one %%configure cell"
    _, args, body = split_magic(source(cells[0]))
    return args, json.loads(body)


def package_names() -> dict[str, str]:
    """The artefact names scripts/package.sh writes, read from the script itself."""
    script = (ROOT / "scripts" / "package.sh").read_text()
    version = re.search(r'^__version__ = "(.+)"', (ROOT / "lib" / "mljobs" / "__init__.py").read_text(), re.M)[1]

    def name(var: str) -> str:
        m = re.search(rf'^{var}="\$out/([^"]+)"', script, re.M)
        assert m, f"{var}= not found in scripts/package.sh"
        return m[1].replace("$version", version)

    return {"zip": name("zip_path"), "conf": name("conf_tar"), "env": name("env_tar")}


class _SqlArgs(argparse.ArgumentParser):
    def error(self, message):  # a bad option must fail the test, not exit the interpreter
        raise AssertionError(f"%%sql: {message}")


def sql_parser() -> argparse.ArgumentParser:
    """The options of SparkMagic's %%sql."""
    p = _SqlArgs(prog="%%sql", add_help=False)
    p.add_argument("-o", "--output")
    p.add_argument("-q", "--quiet", type=bool, nargs="?", const=True, default=False)
    p.add_argument("-m", "--samplemethod", choices=["take", "sample"], default="take")
    p.add_argument("-n", "--maxrows", type=int, default=SQL_MAXROWS)
    p.add_argument("-r", "--samplefraction", type=float, default=SQL_SAMPLEFRACTION)
    p.add_argument("-c", "--coerce", choices=["True", "False", "true", "false"])
    return p


def assigned_names(code: str) -> set[str]:
    return {t.id for node in ast.parse(code).body if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name)}


# ----------------------------------------------------------------------------- structure


def test_notebook_is_valid_nbformat_v4_without_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=nbformat.NO_CONVERT)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.kernelspec.name == "pysparkkernel"  # SparkMagic's PySpark kernel (EMR Studio, SageMaker)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"stored output in cell {cell.id}"
        assert cell.cell_type in ("code", "markdown"), f"unexpected {cell.cell_type} cell {cell.id}"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"


def test_only_sparkmagic_cell_magics_that_the_test_runs():
    for cell in code_cells(load_notebook()):
        magic, _, body = split_magic(source(cell))
        assert magic is None or magic in MAGICS, f"cell {cell['id']}: %%{magic} is not run by this test"
        for line in body.splitlines():
            assert not re.match(r"^\s*[%!]", line), f"cell {cell['id']}: line magic or shell escape {line!r}"


def test_configure_cell_is_the_livy_session_of_the_packaged_artefacts():
    from mljobs.config import env_properties
    from mljobs.emr import LIVY_OWNED, configure_cell, livy_session, submit_args
    from mljobs.session import SESSION_DEFAULTS

    nb = load_notebook()
    args, body = configure_body(nb)
    assert args == "-f"
    assert set(body) <= LIVY_SESSION_KEYS, set(body) - LIVY_SESSION_KEYS
    assert all(isinstance(v, str) for v in body["conf"].values()), "Livy conf values are strings"

    # The artefacts scripts/package.sh builds, under one S3 prefix, with the aliases the conf uses.
    names = package_names()
    (zip_uri,) = body["pyFiles"]
    prefix = zip_uri.rsplit("/", 1)[0]
    assert prefix.startswith("s3://")
    assert zip_uri == f"{prefix}/{names['zip']}"
    assert body["archives"] == [f"{prefix}/{names['env']}#environment", f"{prefix}/{names['conf']}#mljobs-conf"]
    conf = body["conf"]
    python = "./environment/bin/python"
    assert conf["spark.pyspark.python"] == python  # what Livy starts the driver's Python with
    assert conf["spark.yarn.appMasterEnv.PYSPARK_PYTHON"] == python == conf["spark.executorEnv.PYSPARK_PYTHON"]
    assert conf["spark.yarn.appMasterEnv.MLJOBS_CONF_DIR"] == "./mljobs-conf"
    assert conf["spark.dynamicAllocation.enabled"] == "false"  # xgboost.spark's barrier mode
    assert conf["spark.mljobs.env"] == "emr"
    assert not set(conf) & set(LIVY_OWNED)

    # conf/emr.properties and the session defaults, as a job built with build_session gets them.
    props = env_properties("emr")
    for key, value in {**SESSION_DEFAULTS, **props}.items():
        if key not in LIVY_OWNED and "PYSPARK_PYTHON" not in key:
            assert conf[key] == value, key
    # Everything a spark-submit step on EMR passes, the session passes too.
    step = submit_args("emr", prefix, "tune", [])
    step_conf = dict(step[i + 1].split("=", 1) for i, a in enumerate(step) if a == "--conf")
    for key, value in step_conf.items():
        if key not in LIVY_OWNED:
            assert conf[key] == value, key
    assert step[step.index("--py-files") + 1] == zip_uri
    assert step[step.index("--archives") + 1] == ",".join(body["archives"])

    # The cell is exactly what `python -m mljobs.emr livy` prints.
    assert body == livy_session(prefix, "emr")
    cell = next(source(c) for c in code_cells(nb) if split_magic(source(c))[0] == "configure")
    assert cell.rstrip("\n") == configure_cell(prefix).rstrip("\n")
    proc = run_cli([sys.executable, "-m", "mljobs.emr", "livy", "--artifacts", prefix],
                   env_extra={"PYTHONPATH": str(ROOT / "lib")}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip("\n") == cell.rstrip("\n")


def test_livy_session_refuses_what_livy_owns_and_local():
    from mljobs.emr import livy_session
    from mljobs.errors import MljobsError

    with pytest.raises(MljobsError, match="set by the Livy server"):
        livy_session("s3://bucket/p", "emr", ["spark.master=local[2]"])
    with pytest.raises(MljobsError, match="emr or emr-gpu"):
        livy_session("s3://bucket/p", "local")
    gpu = livy_session("s3://bucket/p", "emr-gpu", ["spark.executor.instances=4"])["conf"]
    assert gpu["spark.plugins"] == "com.nvidia.spark.SQLPlugin" and gpu["spark.mljobs.env"] == "emr-gpu"
    assert gpu["spark.executor.instances"] == "4"


def test_sql_cells_query_the_parameters_database_and_study():
    nb = load_notebook()
    params = next(c for c in code_cells(nb) if "parameters" in c["metadata"].get("tags", []))
    ns: dict = {}
    exec(source(params), ns)
    assert set(SMALL) <= assigned_names(source(params)), set(SMALL) - assigned_names(source(params))
    bodies = [split_magic(source(c))[2] for c in code_cells(nb) if split_magic(source(c))[0] == "sql"]
    assert bodies
    assert any(re.search(rf"\bstudy\s*=\s*'{re.escape(ns['STUDY'])}'", sql) for sql in bodies)
    for sql in bodies:
        dbs = re.findall(r"\b([A-Za-z_]\w*)\.[A-Za-z_]\w*\b", sql) + re.findall(r"\bTABLES\s+IN\s+(\w+)", sql, re.I)
        assert dbs and set(dbs) == {ns["DB"]}, sql
        for study in re.findall(r"\bstudy\s*=\s*'([^']*)'", sql):
            assert study == ns["STUDY"]


# ----------------------------------------------------------------------------- running it


@pytest.fixture(scope="module")
def executed(spark, tmp_path_factory):
    """Run every cell; yields (cluster namespace, local namespace, {cell id: %%sql result}, figures)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    remote = {"spark": spark, "sc": spark.sparkContext, "__name__": "__main__"}
    local = {"__name__": "__main__"}
    results = {}
    for cell in code_cells(load_notebook()):
        cid = cell["id"]
        t0 = time.monotonic()
        magic, args, body = split_magic(source(cell))
        if magic == "configure":
            continue  # checked in test_configure_cell_..., never sent anywhere
        if magic == "sql":
            opts = sql_parser().parse_args(shlex.split(args))
            df = spark.sql(body)
            if opts.samplemethod == "sample":
                df = df.sample(False, opts.samplefraction)
            if opts.maxrows >= 0:
                df = df.limit(opts.maxrows)
            pdf = df.toPandas()
            results[cid] = pdf
            if opts.output:
                local[opts.output] = pdf
        elif magic == "local":
            exec(compile(body, f"<cell {cid} (%%local)>", "exec"), local)
        elif magic is None:
            exec(compile(body, f"<cell {cid}>", "exec"), remote)
            if "parameters" in cell["metadata"].get("tags", []):
                remote.update(SMALL, WORK_DIR=str(tmp_path_factory.mktemp("cluster-fs") / "mljobs-notebook"),
                              RESULTS=str(tmp_path_factory.mktemp("results")))
        else:
            pytest.fail(f"cell {cid}: %%{magic} is not supported by this test")
        print(f"[notebook] cell {cid}: {time.monotonic() - t0:.1f} s", flush=True)
    figures = [plt.figure(n) for n in plt.get_fignums()]
    yield remote, local, results, figures
    plt.close("all")
    spark.conf.unset("spark.mljobs.resultsDir")  # the notebook set it on the shared session


@pytest.mark.slow
def test_notebook_runs_and_its_sql_sees_every_table(executed):
    remote, local, results, figures = executed
    tables = set(results["sql-tables"]["tableName"])
    assert {"flights", "flights_quarantine", "tuning_trials", "shap_local", "shap_global", "predictions", "bias_metrics",
            "det_frames", "det_videos", "det_errors"} <= tables
    # -o frames exist in %%local only; the cluster's variables stay there.
    assert {"trials", "shap", "late", "scored", "bias_by_origin", "frames", "videos"} <= set(local)
    assert not {"trials", "shap", "late", "scored", "bias_by_origin", "frames", "videos"} & set(remote)
    assert not {"tune", "explain", "predict", "bias", "detection", "spark"} & set(local)
    assert figures and len(figures[0].axes) == 3


@pytest.mark.slow
def test_notebook_ingests_tunes_and_keeps_the_model(executed):
    remote, local, _, _ = executed
    ingest = remote["ingest"]
    assert ingest["rows_accepted"] > 20_000 and ingest["partitions_written"] == 1  # January 2013 only
    trials = local["trials"]
    assert list(trials.columns) == ["trial_number", "state", "accuracy", "p_max_depth", "p_n_estimators",
                                    "colsample_bytree", "seconds"]
    assert len(trials) == SMALL["TRIALS"] and set(trials["state"]) == {"COMPLETE"}
    assert trials["p_max_depth"].between(2, 3).all() and trials["p_n_estimators"].between(5, 10).all()
    assert trials["accuracy"].max() == pytest.approx(round(remote["tune"]["best_value"], 4))
    model = remote["model"]
    assert model.study == remote["STUDY"] and model.table == f"{remote['DB']}.flights"
    # RESULTS (spark.mljobs.resultsDir) holds the model and the tuning plots.
    assert remote["tune"]["model_dir"] == str(Path(remote["RESULTS"]) / "models" / remote["STUDY"])
    assert all(p.startswith(remote["RESULTS"]) for p in remote["tune"]["plots"])
    assert model.rows == ingest["rows_accepted"] and model.cv_folds == SMALL["CV_FOLDS"]


@pytest.mark.slow
def test_notebook_explains_the_model(executed):
    from mljobs.ingest.schema import FEATURES

    remote, local, _, _ = executed
    shap = local["shap"]
    assert list(shap.columns) == ["rank", "feature", "mean_abs_shap", "median_shap", "rows"]
    assert sorted(shap["rank"]) == list(range(1, len(FEATURES) + 1))
    assert set(shap["feature"]) == set(FEATURES) == set(remote["model"].features)
    assert (shap["rows"] == remote["explain"]["rows_explained"]).all()
    assert shap["mean_abs_shap"].is_monotonic_decreasing
    late = local["late"]
    assert len(late) == 20  # -n 20 of about 500 explained rows
    assert late["p_late"].is_monotonic_decreasing and late["p_late"].between(0, 1).all()
    assert list(late.columns[:3]) == ["row_id", "Reporting_Airline", "p_late"]


@pytest.mark.slow
def test_notebook_scores_the_flights_with_the_model(executed):
    remote, local, _, _ = executed
    predict, scored = remote["predict"], local["scored"]
    assert predict["rows_scored"] == remote["ingest"]["rows_accepted"] == scored["flights"].sum()
    assert scored["predicted_late"].sum() == predict["positives"]
    assert predict["partitioned_by"] == ["Year", "Month"] and predict["out_table"] == f"{remote['DB']}.predictions"
    # Scored on its own training rows: the refit's metrics that tune recorded.
    assert predict["metrics"]["accuracy"] == pytest.approx(remote["model"].train_metrics["accuracy"], abs=1e-12)


@pytest.mark.slow
def test_notebook_checks_the_predictions_for_bias_by_origin(executed):
    remote, local, _, _ = executed
    bias, rows = remote["bias"], local["bias_by_origin"]
    assert bias["stages"] == ["pre", "post"] and bias["rows"] == remote["predict"]["rows_scored"]
    assert set(rows["origin"]) == {"EWR", "JFK", "LGA"}  # each New York airport against the other two
    assert set(rows["metric"]) == {"CI", "DPL", "DPPL", "DI", "RD"}
    # CI from the counts the job reports: (n_rest - n_facet) / n, per origin
    counts = {c["value_or_threshold"]: c for c in bias["counts"] if "group" not in c}
    ci = rows[rows.metric == "CI"].set_index("origin")["value"]
    for origin, c in counts.items():
        n_d, n_a = c["facet_rows"], c["rest_rows"]
        assert ci[origin] == pytest.approx(round((n_a - n_d) / (n_a + n_d), 4), abs=1e-4)
    doc = json.loads(Path(bias["analysis_json"]).read_text())
    assert {"pre_training_bias_metrics", "post_training_bias_metrics"} <= set(doc)


@pytest.mark.slow
def test_notebook_scores_the_detector_frame_by_frame(executed):
    remote, local, _, _ = executed
    frames, videos = local["frames"], local["videos"]
    assert list(frames.columns) == ["video", "frame", "num_gt", "num_det", "tp", "fp", "fn", "f1"]
    assert len(frames) == SMALL["PLAYS"] * SMALL["FRAMES_PER_PLAY"]
    assert (frames["tp"] + frames["fn"] == frames["num_gt"]).all()
    assert (frames["tp"] + frames["fp"] == frames["num_det"]).all()
    assert list(videos.columns) == ["scope", "video", "frames", "frames_with_errors", "tp", "fp", "fn", "precision",
                                    "recall", "ap", "ap50", "snap_frame"]
    assert list(videos["scope"]) == ["overall"] + ["video"] * SMALL["PLAYS"]
    assert videos["ap"].between(0, 1).all()
    overall = remote["detection"]["overall"]
    assert (overall["tp"], overall["fp"], overall["fn"]) == (frames["tp"].sum(), frames["fp"].sum(), frames["fn"].sum())
    assert videos["snap_frame"].iloc[1:].notna().all()


@pytest.mark.slow
def test_notebook_trains_validates_and_labels_the_reviews(executed):
    remote, local, results, figures = executed
    counts = local["review_counts"].set_index("label")["snippets"]
    assert counts.sum() == len(remote["rows"]) == -(-3708 // SMALL["REVIEWS_EVERY"])
    text, labelled = remote["text"], remote["labelled"]
    assert text["labels"] == ["negative", "positive"] and text["trials_complete"] == SMALL["TEXT_TRIALS"]
    assert text["rows"] == counts.get("negative") + counts.get("positive")
    validation = local["text_validation"].set_index("label")
    assert validation.loc["all", "support"] == text["rows_validation"]
    assert validation.loc["all", "accuracy"] == pytest.approx(round(text["validation"]["accuracy"], 3))
    assert labelled["rows_scored"] == counts.sum() and sum(labelled["predicted_counts"].values()) == counts.sum()
    errors = local["text_errors"]
    assert len(errors) >= 1 and (errors["label"] != errors["predicted"]).all()
    by_rating = local["text_by_rating"]
    # the model agrees with the raters: P(positive) is higher for the best-rated snippets than the worst
    assert by_rating["p_positive"].iloc[-1] > by_rating["p_positive"].iloc[0]
    assert len(figures) == 2 and len(figures[1].axes) == 2


@pytest.mark.slow
def test_notebook_trains_an_image_classifier_and_labels_the_images(executed):
    remote, local, _, _ = executed
    classifier, labelled = remote["classifier"], remote["classified"]
    assert classifier["epochs_run"] == SMALL["IMAGE_EPOCHS"] and classifier["test"]["images"] == 359
    assert classifier["model_dir"] == str(Path(remote["RESULTS"]) / "models" / "digits_classifier")
    evaluation = local["digit_eval"]
    assert list(evaluation["label"]) == [str(d) for d in range(10)] and evaluation["test_images"].sum() == 359
    assert labelled["images"] == 1797 and labelled["quarantined"] == 0
    assert labelled["labelled"] + labelled["unlabelled_below_threshold"] == 1797


@pytest.mark.slow
def test_notebook_runs_the_video_chain_on_tables(executed):
    remote, local, _, _ = executed
    plays, kept = remote["VIDEO_PLAYS"], -(-SMALL["VIDEO_FRAMES"] // remote["VIDEO_EVERY"])
    frames, boxes, metrics = remote["play_frames"], remote["play_boxes"], remote["play_metrics"]
    assert (frames["videos"], frames["frames"], frames["quarantined"]) == (plays, plays * kept, 0)
    assert boxes["frames_scored"] == plays * kept and boxes["out_table"] == f"{remote['DB']}.play_boxes"
    counts = local["play_counts"]
    assert list(counts["frames"]) == [kept] * plays and counts["boxes"].sum() == boxes["detections"]
    # the ground truth is that of the kept frames; each of its helmets is found (TP) or missed (FN)
    gt = remote["spark"].table(f"{remote['DB']}.play_labels").select("frame").toPandas()["frame"]
    assert ((gt - 1) % remote["VIDEO_EVERY"] == 0).all() and gt.max() <= SMALL["VIDEO_FRAMES"]
    drawn, overall = len(gt), metrics["overall"]
    assert overall["tp"] + overall["fn"] == drawn > 0 and overall["tp"] + overall["fp"] <= boxes["detections"]
