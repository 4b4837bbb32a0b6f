"""python -m mljobs.sagemaker: the model.tar.gz layout (xgboost reads it, so does load_artifact),
its determinism, and deploy / transform / delete as real boto3 HTTP calls to a moto server on
127.0.0.1, checked with the service's own describe calls. Moto accepts the calls and runs
nothing: no inference happens here."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import tarfile

import numpy as np
import pytest
from helpers import PLANTED, ROOT, last_json, run_cli

ROLE = "arn:aws:iam::123456789012:role/mljobs-sagemaker"
BUILTIN_US_EAST_1 = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
USER_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mljobs-serve:0.1.0"
CARRIERS = ["AA", "DL", "UA"]
# Nothing listens here: a command that made any AWS call would fail with exit 3.
NO_AWS = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}


def sagemaker(*args, env):
    return run_cli([sys.executable, "-m", "mljobs.sagemaker", *args],
                   env_extra={"PYTHONPATH": str(ROOT / "lib"), **PLANTED, **env}, timeout=120)


def _features(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(size=n), rng.uniform(0, 100, size=n),
                            rng.integers(0, len(CARRIERS), size=n)]).astype(np.float32)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(model dir, booster, rows): a real xgboost model with a string feature, as tune writes it."""
    import xgboost as xgb

    from mljobs.models.artifact import ModelArtifact, save_artifact

    x = _features(400)
    y = ((x[:, 0] + x[:, 1] / 50 + (x[:, 2] == 1)) > 1.5).astype(int)
    feats = ["dep_delay", "distance", "carrier"]
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "seed": 1},
                        xgb.DMatrix(x, label=y, feature_names=feats), num_boost_round=15)
    directory = tmp_path_factory.mktemp("models") / "sm-study"
    save_artifact(directory, booster, ModelArtifact(study="sm-study", family="xgboost", label="late",
                                                    features=feats, params={"max_depth": 3},
                                                    categorical_maps={"carrier": CARRIERS}))
    return directory, booster, _features(50, seed=1)


@pytest.fixture(scope="module")
def aws(moto_env):
    """The test's own boto3 clients, pointed at the moto server."""
    import boto3

    mp = pytest.MonkeyPatch()
    for k, v in {**moto_env, **PLANTED}.items():
        mp.setenv(k, v)
    s3, sm = boto3.client("s3"), boto3.client("sagemaker")
    s3.create_bucket(Bucket="sm-art")
    yield s3, sm
    mp.undo()


@pytest.mark.filterwarnings("ignore:.*Unknown file format")  # loaded by path, as the built-in container does
def test_package_layout_is_read_by_xgboost_and_load_artifact(model, tmp_path):
    import xgboost as xgb

    from mljobs.models.artifact import load_artifact

    directory, booster, rows = model
    out = tmp_path / "model.tar.gz"
    proc = sagemaker("package", "--model", str(directory), "--out", str(out), env=NO_AWS)
    assert proc.returncode == 0, proc.stderr
    summary = last_json(proc.stdout)
    assert summary["status"] == "ok" and summary["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    # A string feature: the built-in container takes numbers only; the warning says so.
    assert "string features carrier" in proc.stdout and "mljobs.serve takes the raw strings" in proc.stdout
    with tarfile.open(out) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["metadata.json", "xgboost-model"]
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}
        tar.extractall(tmp_path / "x", filter="data")
    extracted = tmp_path / "x"
    # The bytes of the booster are the tune model's, so the sha256 in metadata.json still holds.
    assert (extracted / "xgboost-model").read_bytes() == (directory / "model.json").read_bytes()
    loaded = xgb.Booster()
    loaded.load_model(str(extracted / "xgboost-model"))  # no extension, as the built-in container names it
    np.testing.assert_array_equal(loaded.inplace_predict(rows), booster.inplace_predict(rows))
    art = load_artifact(extracted)
    original = load_artifact(directory)
    assert art.model_file == "xgboost-model" and art.model_sha256 == original.model_sha256 == summary["model_sha256"]
    assert art.features == original.features and art.categorical_maps == {"carrier": CARRIERS}
    np.testing.assert_array_equal(art.booster().inplace_predict(rows), booster.inplace_predict(rows))


def test_package_is_deterministic(model, tmp_path):
    from mljobs.sagemaker import archive_bytes, read_archive

    directory, _, _ = model
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)  # other file times, other path: the same archive
    first, meta = archive_bytes(directory)
    assert archive_bytes(copy)[0] == first
    assert read_archive(first, "x")["model_sha256"] == meta["model_sha256"]
    # A tampered booster is refused.
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    from mljobs.sagemaker import _tar_gz
    from mljobs.errors import InputError

    with pytest.raises(InputError, match="sha256 differs"):
        read_archive(_tar_gz({**files, "xgboost-model": files["xgboost-model"].replace(b"{", b"{ ", 1)}), "t")


def _describe(sm, name):
    model = sm.describe_model(ModelName=name)
    config = sm.describe_endpoint_config(EndpointConfigName=name)
    endpoint = sm.describe_endpoint(EndpointName=name)
    return model, config, endpoint


def test_deploy_transform_delete_against_moto(model, aws, moto_env, tmp_path):
    from mljobs.sagemaker import archive_bytes

    s3, sm = aws
    directory, _, _ = model
    args = ["deploy", "--model", str(directory), "--s3-prefix", "s3://sm-art/endpoints", "--role-arn", ROLE,
            "--name", "flights-xgb-1", "--instance-type", "ml.c5.xlarge", "--instance-count", "2"]
    dry = sagemaker(*args, "--dry-run", env=NO_AWS)  # no call: nothing listens at NO_AWS
    assert dry.returncode == 0 and last_json(dry.stdout)["status"] == "dry-run", dry.stderr
    dep = sagemaker(*args, "--poll-seconds", "0.1", env=moto_env)
    assert dep.returncode == 0, dep.stderr
    summary = last_json(dep.stdout)
    assert summary["status"] == "ok" and summary["endpoint_status"] == "InService"
    model_desc, config, endpoint = _describe(sm, "flights-xgb-1")
    container = model_desc["PrimaryContainer"]
    assert container["Image"] == BUILTIN_US_EAST_1 == summary["image"]
    assert model_desc["ExecutionRoleArn"] == ROLE
    # ModelDataUrl is the uploaded archive, byte for byte what package writes.
    data = archive_bytes(directory)[0]
    digest = hashlib.sha256(data).hexdigest()
    assert container["ModelDataUrl"] == f"s3://sm-art/endpoints/flights-xgb-1/{digest[:16]}/model.tar.gz"
    assert s3.get_object(Bucket="sm-art", Key=container["ModelDataUrl"][len("s3://sm-art/"):])["Body"].read() == data
    assert container["Environment"] == {"MLJOBS_MODEL_SHA256": json.loads((directory / "metadata.json").read_text())["model_sha256"]}
    [variant] = config["ProductionVariants"]
    assert (variant["ModelName"], variant["InstanceType"], variant["InitialInstanceCount"]) == \
        ("flights-xgb-1", "ml.c5.xlarge", 2)
    assert endpoint["EndpointConfigName"] == "flights-xgb-1" and endpoint["EndpointStatus"] == "InService"
    # The dry run printed exactly what was sent.
    sent = json.loads(dry.stdout[dry.stdout.index("{\n"):dry.stdout.rindex("\n}") + 2])
    assert sent["CreateModel"]["PrimaryContainer"] == container
    assert sent["CreateEndpointConfig"]["ProductionVariants"] == config["ProductionVariants"]

    tf = sagemaker("transform", "--model-name", "flights-xgb-1", "--input", "s3://sm-art/batch/in/",
                   "--output", "s3://sm-art/batch/out", "--job-name", "flights-batch-1", "--wait",
                   "--poll-seconds", "0.1", "--instance-type", "ml.m5.xlarge", env=moto_env)
    assert tf.returncode == 0 and last_json(tf.stdout)["status"] == "ok", tf.stderr
    job = sm.describe_transform_job(TransformJobName="flights-batch-1")
    assert job["ModelName"] == "flights-xgb-1"
    assert job["TransformInput"] == {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                                     "S3Uri": "s3://sm-art/batch/in/"}},
                                     "ContentType": "text/csv", "SplitType": "Line"}
    assert job["TransformOutput"] == {"S3OutputPath": "s3://sm-art/batch/out", "Accept": "text/csv",
                                      "AssembleWith": "Line"}
    assert job["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}

    # A packaged archive and a user image (mljobs.serve): the archive goes up as it is.
    pkg = tmp_path / "model.tar.gz"
    pkg.write_bytes(data)
    user = sagemaker("deploy", "--model", str(pkg), "--s3-prefix", "s3://sm-art/endpoints", "--role-arn", ROLE,
                     "--name", "flights-serve", "--image-uri", USER_IMAGE, "--no-wait", env=moto_env)
    assert user.returncode == 0 and last_json(user.stdout)["status"] == "created", user.stderr
    assert "string features" not in user.stdout  # mljobs.serve takes the raw strings
    assert sm.describe_model(ModelName="flights-serve")["PrimaryContainer"]["Image"] == USER_IMAGE

    gone = sagemaker("delete", "--name", "flights-xgb-1", env=moto_env)
    assert gone.returncode == 0, gone.stderr
    assert {k: last_json(gone.stdout)[k] for k in ("endpoint", "endpoint_config", "model")} == \
        {"endpoint": "deleted", "endpoint_config": "deleted", "model": "deleted"}
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["flights-serve"]
    again = sagemaker("delete", "--name", "flights-xgb-1", env=moto_env)
    assert again.returncode == 0 and "endpoint flights-xgb-1: missing" in again.stdout, again.stderr
    assert last_json(again.stdout)["model"] == "missing"
    for proc in (dry, dep, tf, user, gone, again):
        for secret in PLANTED.values():
            assert secret not in proc.stdout + proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--name", "flights_xgb"], "--name 'flights_xgb': SageMaker names"),
    (["--name", "-lead"], "--name '-lead'"),
    (["--name", "a" * 64], "SageMaker names are 1-63"),
    (["--role-arn", "mljobs-role"], "--role-arn 'mljobs-role': expected arn:aws:iam::"),
    (["--role-arn", "arn:aws:iam::123:role/x"], "expected arn:aws:iam::ACCOUNT_ID"),
    (["--region", "xx-nowhere-1"], "no built-in XGBoost image is known for region xx-nowhere-1: pass --image-uri"),
    (["--s3-prefix", "s3://Bad_Bucket/x"], "expected s3://BUCKET[/PREFIX]"),
    (["--instance-type", "m5.large"], "--instance-type 'm5.large'"),
    (["--instance-count", "0"], "--instance-count must be at least 1"),
])
def test_bad_deploy_arguments_exit_2_before_any_call(model, args, message, monkeypatch, capsys):
    from mljobs.sagemaker import main

    for k, v in {**NO_AWS, **PLANTED}.items():
        monkeypatch.setenv(k, v)
    base = {"--model": str(model[0]), "--s3-prefix": "s3://sm-art/x", "--role-arn": ROLE, "--name": "ok-name"}
    base.update(dict(zip(args[::2], args[1::2])))
    code = main(["deploy", *[f"{k}={v}" for k, v in base.items()]])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err


@pytest.mark.parametrize("args,message", [
    (["transform", "--model-name", "m", "--input", "/local/in", "--output", "s3://sm-art/out"], "got '/local/in'"),
    (["transform", "--model-name", "m", "--input", "s3://sm-art/in", "--output", "s3://sm-art/o", "--job-name", "a.b"],
     "--job-name 'a.b'"),
    (["delete", "--name", "bad name"], "--name 'bad name'"),
    (["package", "--model", "/nonexistent/model", "--out", "/tmp/never.tar.gz"], "not a model directory"),
])
def test_bad_transform_delete_package_arguments_exit_2(args, message, monkeypatch, capsys):
    from mljobs.sagemaker import main

    for k, v in NO_AWS.items():
        monkeypatch.setenv(k, v)
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_aws_error_exits_3_with_one_line(model, moto_env):
    proc = sagemaker("deploy", "--model", str(model[0]), "--s3-prefix", "s3://no-such-bucket-sm/x", "--role-arn", ROLE,
                     "--name", "flights-nobucket", env=moto_env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "NoSuchBucket" in proc.stderr and "Traceback" not in proc.stderr
    for secret in PLANTED.values():
        assert secret not in proc.stdout + proc.stderr
