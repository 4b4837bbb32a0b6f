"""Shipping to EMR: packaging, the emr/emr-gpu submit commands, EMR steps through real boto3
HTTP calls to a moto server on 127.0.0.1, and no credentials in anything produced."""
from __future__ import annotations

import gzip
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import zipfile

import pytest
from helpers import PLANTED, ROOT, run_cli

VERSION = "0.1.0"
ART = "s3://mljobs-art/releases/0.1.0"
PIPELINE_ARGS = ["--input", "s3://mljobs-data/bts/2013/", "--table", "airline.flights", "--study", "emr-xgb",
                 "--where", "Month <= 3", "--gt", "s3://mljobs-data/helmets/train_labels.csv",
                 "--pred", "s3://mljobs-data/helmets/detections.csv", "--tune-args", "--max-trials 20 --max-parallel 2"]


def py(*args, env_extra=None, timeout=300):
    env = {"PYTHONPATH": str(ROOT / "lib"), **PLANTED, **(env_extra or {})}
    return run_cli([sys.executable, *args], env_extra=env, timeout=timeout)


@pytest.fixture(scope="module")
def moto(moto_env):
    return moto_env


@pytest.fixture(scope="module")
def aws(moto, monkeypatch_module):
    """boto3 clients of the test itself, pointed at the moto server."""
    import boto3

    for k, v in {**moto, **PLANTED}.items():
        monkeypatch_module.setenv(k, v)
    return boto3.client("s3"), boto3.client("emr")


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """./spark-submit.sh package into a temp dir, with a one-package environment (PyYAML)
    so the venv-pack recipe is exercised without packing the full 1.6 GB of dependencies."""
    out = tmp_path_factory.mktemp("build")
    reqs = out.parent / "reqs.txt"
    reqs.write_text("PyYAML\n")
    proc = run_cli(["./spark-submit.sh", "package", "--out", str(out), "--requirements", str(reqs)],
                   env_extra=PLANTED, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    paths = proc.stdout.split()
    assert [p.rsplit("/", 1)[1] for p in paths] == [
        f"mljobs-{VERSION}.zip", f"mljobs-conf-{VERSION}.tar.gz", f"mljobs-{VERSION}-py3-none-any.whl",
        "mljobs-env-py311-linux-x86_64.tar.gz"]
    return out, proc


def test_package_builds_zip_wheel_conf_and_env_archive(packaged):
    out, _ = packaged
    with zipfile.ZipFile(out / f"mljobs-{VERSION}.zip") as z:
        names = z.namelist()
    assert "mljobs/emr.py" in names and "mljobs/tune/job.py" in names
    assert all(n.startswith("mljobs/") and n.endswith(".py") for n in names), names
    assert names == sorted(names)
    with zipfile.ZipFile(out / f"mljobs-{VERSION}-py3-none-any.whl") as z:
        meta = z.read(f"mljobs-{VERSION}.dist-info/METADATA").decode()
        assert "mljobs/emr.py" in z.namelist()
    assert "Requires-Dist: xgboost<3.3,>=3.2" in meta and "Requires-Dist: pyspark==3.5.5" in meta
    with tarfile.open(out / f"mljobs-conf-{VERSION}.tar.gz") as t:
        conf = sorted(m.name for m in t.getmembers() if m.isfile())
    assert "./emr-gpu.properties" in conf and "./tune.yaml" in conf and not any(n.endswith(".json") for n in conf)

    with tarfile.open(out / "mljobs-env-py311-linux-x86_64.tar.gz") as t:
        members = {m.name: m for m in t.getmembers()}
        cfg = t.extractfile("pyvenv.cfg").read().decode()
    # EMR's interpreter, not this machine's: the link and pyvenv.cfg name /usr/bin/python3.11.
    assert members["bin/python3.11"].issym() and members["bin/python3.11"].linkname == "/usr/bin/python3.11"
    assert members["bin/python"].linkname == "python3.11"
    assert "home = /usr/bin\n" in cfg and "command" not in cfg and str(out) not in cfg
    site = "lib/python3.11/site-packages/"
    assert f"{site}yaml/__init__.py" in members
    assert not any(n.startswith((f"{site}pyspark", f"{site}mljobs", f"{site}pip/")) for n in members)


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3.11"), reason="needs /usr/bin/python3.11, EMR's interpreter path")
def test_env_archive_runs_like_a_yarn_container(packaged, tmp_path):
    """The container layout YARN makes from --archives/--py-files: environment/, mljobs-conf/,
    the zip in the working directory; ./environment/bin/python must import both."""
    out, _ = packaged
    with tarfile.open(out / "mljobs-env-py311-linux-x86_64.tar.gz") as t:
        t.extractall(tmp_path / "environment", filter="fully_trusted")
    with tarfile.open(out / f"mljobs-conf-{VERSION}.tar.gz") as t:
        t.extractall(tmp_path / "mljobs-conf", filter="data")
    (tmp_path / f"mljobs-{VERSION}.zip").write_bytes((out / f"mljobs-{VERSION}.zip").read_bytes())
    code = ("import sys, yaml, mljobs.config as c; "
            "print(sys.prefix); print(c.__file__); print(c.env_properties('emr-gpu')['spark.plugins'])")
    proc = subprocess.run(["./environment/bin/python", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"mljobs-{VERSION}.zip",
                               "MLJOBS_CONF_DIR": "./mljobs-conf"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    prefix, module, plugin = proc.stdout.split()
    assert prefix == str(tmp_path / "environment")
    assert module == str(tmp_path / f"mljobs-{VERSION}.zip" / "mljobs" / "config.py")
    assert plugin == "com.nvidia.spark.SQLPlugin"


def _submit(env, *extra, env_extra=None):
    proc = run_cli(["./spark-submit.sh", "--env", env, *extra, "--dry-run", "tune", "--table", "airline.flights",
                    "--study", "s1"], env_extra=env_extra)
    return proc


def test_emr_dry_run_with_artifacts_is_exact():
    proc = _submit("emr", "--artifacts", ART + "/")
    assert proc.returncode == 0, proc.stderr
    cmd = shlex.split(proc.stdout)
    assert cmd[0].endswith("spark-submit")
    assert cmd[1:] == [
        "--conf", "spark.master=yarn", "--conf", "spark.submit.deployMode=cluster",
        "--conf", "spark.dynamicAllocation.enabled=false", "--conf", "spark.executor.instances=2",
        "--conf", "spark.executor.cores=4", "--conf", "spark.executor.memory=12g",
        "--conf", "spark.sql.adaptive.enabled=true", "--conf", "spark.sql.sources.partitionOverwriteMode=dynamic",
        "--conf", "spark.mljobs.env=emr",
        "--conf", "spark.yarn.appMasterEnv.PYSPARK_PYTHON=./environment/bin/python",
        "--conf", "spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python",
        "--conf", "spark.yarn.appMasterEnv.MLJOBS_CONF_DIR=./mljobs-conf",
        "--py-files", f"{ART}/mljobs-{VERSION}.zip",
        "--archives", f"{ART}/mljobs-env-py311-linux-x86_64.tar.gz#environment,{ART}/mljobs-conf-{VERSION}.tar.gz#mljobs-conf",
        f"{ART}/jobs/tune.py", "--table", "airline.flights", "--study", "s1",
    ]
    # $MLJOBS_ARTIFACTS gives the same command.
    assert _submit("emr", env_extra={"MLJOBS_ARTIFACTS": ART}).stdout == proc.stdout


def test_emr_gpu_dry_run_and_python_emr_agree():
    from mljobs.emr import submit_args

    proc = _submit("emr-gpu", "--artifacts", ART, "--conf", "spark.executor.instances=4")
    assert proc.returncode == 0, proc.stderr
    cmd = shlex.split(proc.stdout)
    confs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--conf"]
    for kv in ("spark.master=yarn", "spark.submit.deployMode=cluster", "spark.dynamicAllocation.enabled=false",
               "spark.plugins=com.nvidia.spark.SQLPlugin", "spark.rapids.sql.enabled=true",
               "spark.executor.resource.gpu.amount=1", "spark.task.resource.gpu.amount=0.25",
               "spark.executor.resource.gpu.discoveryScript=/usr/lib/spark/scripts/gpu/getGpusResources.sh",
               "spark.mljobs.device=cuda", "spark.mljobs.env=emr-gpu", "spark.executor.instances=4"):
        assert kv in confs, kv
    # One python per side, the shipped one (conf/emr-gpu.properties' python3.11 is replaced).
    assert [c for c in confs if "PYSPARK_PYTHON" in c] == [
        "spark.yarn.appMasterEnv.PYSPARK_PYTHON=./environment/bin/python",
        "spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python"]
    # The EMR steps and spark-submit.sh build the same command (one spec, two implementations).
    assert submit_args("emr-gpu", ART, "tune", ["--table", "airline.flights", "--study", "s1"],
                       ["spark.executor.instances=4"])[1:] == cmd[1:]
    assert submit_args("emr", ART, "tune", ["--table", "airline.flights", "--study", "s1"])[1:] == \
        shlex.split(_submit("emr", "--artifacts", ART).stdout)[1:]


def test_artifacts_flag_is_validated():
    proc = run_cli(["./spark-submit.sh", "--artifacts", ART, "--dry-run", "sql", "SELECT 1"])
    assert proc.returncode == 2 and "--artifacts is for --env emr or emr-gpu" in proc.stderr
    for bad in ("/local/dir", "s3://Bad_Bucket/x", "s3://b/x;rm -rf /", "https://b.s3.amazonaws.com/x"):
        proc = run_cli(["./spark-submit.sh", "--env", "emr", "--artifacts", bad, "--dry-run", "sql", "SELECT 1"])
        assert proc.returncode == 2 and "--artifacts must be s3://BUCKET[/PREFIX]" in proc.stderr, bad
    # An exported MLJOBS_ARTIFACTS does not disturb local runs.
    proc = run_cli(["./spark-submit.sh", "--dry-run", "sql", "SELECT 1"], env_extra={"MLJOBS_ARTIFACTS": ART})
    assert proc.returncode == 0 and "s3://" not in proc.stdout


def test_steps_json_for_the_pipeline():
    proc = py("-m", "mljobs.emr", "steps", "--artifacts", ART, "--env", "emr-gpu", "--action-on-failure", "CONTINUE",
              *PIPELINE_ARGS)
    assert proc.returncode == 0, proc.stderr
    steps = json.loads(proc.stdout)
    assert [s["Name"] for s in steps] == ["mljobs ingest airline.flights", "mljobs tune airline.flights",
                                          "mljobs predict airline.flights", "mljobs bias airline.predictions",
                                          "mljobs explain airline.flights", "mljobs detection-metrics detection"]
    assert {s["ActionOnFailure"] for s in steps} == {"CONTINUE"}
    assert {s["HadoopJarStep"]["Jar"] for s in steps} == {"command-runner.jar"}
    args = [s["HadoopJarStep"]["Args"] for s in steps]
    assert all(a[0] == "spark-submit" and "spark.plugins=com.nvidia.spark.SQLPlugin" in a for a in args)
    # Models, plots and reports of every step go under the results prefix, not a container's disk.
    assert all(f"spark.mljobs.resultsDir={ART}/results" in a for a in args)
    tails = [a[a.index(f"{ART}/jobs/{job}.py"):] for a, job in zip(args, ("ingest", "tune", "predict", "bias",
                                                                                 "explain", "detection_metrics"))]
    model = f"{ART}/results/models/emr-xgb"
    assert tails == [
        [f"{ART}/jobs/ingest.py", "--input", "s3://mljobs-data/bts/2013/", "--table", "airline.flights"],
        [f"{ART}/jobs/tune.py", "--table", "airline.flights", "--study", "emr-xgb", "--model-dir", model,
         "--where", "Month <= 3", "--max-trials", "20", "--max-parallel", "2"],
        [f"{ART}/jobs/predict.py", "--model", model, "--table", "airline.flights", "--keep", "Reporting_Airline"],
        [f"{ART}/jobs/bias.py", "--table", "airline.predictions", "--label", "ArrDel15", "--facet", "Reporting_Airline",
         "--predicted-label-col", "prediction", "--output", f"{ART}/results/explain/emr-xgb", "--no-plots"],
        [f"{ART}/jobs/explain.py", "--model", model, "--table", "airline.flights", "--where", "Month <= 3"],
        [f"{ART}/jobs/detection_metrics.py", "--gt", "s3://mljobs-data/helmets/train_labels.csv",
         "--pred", "s3://mljobs-data/helmets/detections.csv"],
    ]
    # A subset keeps pipeline order; what a step needs is checked before anything is sent.
    proc = py("-m", "mljobs.emr", "steps", "--artifacts", ART, "--jobs", "explain,tune", *PIPELINE_ARGS)
    assert [s["Name"].split()[1] for s in json.loads(proc.stdout)] == ["tune", "explain"]
    proc = py("-m", "mljobs.emr", "steps", "--artifacts", ART, "--jobs", "tune", "--table", "airline.flights")
    assert proc.returncode == 2 and "the tune step needs --study" in proc.stderr
    proc = py("-m", "mljobs.emr", "steps", "--artifacts", ART, "--jobs", "ingest", "--input", "s3://d/x",
              "--table", "a.b; DROP TABLE x")
    assert proc.returncode == 2 and "invalid table name" in proc.stderr


def test_package_extras_add_their_requirements(tmp_path):
    """The environment's requirement list: the wheel's own, plus the vision extra when asked."""
    def listed(*extra):
        proc = run_cli(["./spark-submit.sh", "package", "--out", str(tmp_path), "--requirements-only", *extra],
                       timeout=300)
        return proc, (tmp_path / "env-requirements.txt").read_text().split() if proc.returncode == 0 else []

    proc, plain = listed()
    assert proc.returncode == 0 and "xgboost<3.3,>=3.2" in plain and not any("opencv" in r for r in plain)
    assert not any(r.startswith(("pyspark", "pytest", "chispa")) for r in plain)
    proc, vision = listed("--extras", "vision")
    assert sorted(set(vision) - set(plain)) == ["opencv-python-headless<5,>=4.10", "scikit-image>=0.22", "setuptools<81",
                                                "torch>=2.9", "torchvision>=0.24"]
    proc, _ = listed("--extras", "visoin")
    assert proc.returncode != 0 and "unknown extras ['visoin']" in proc.stderr


def test_steps_json_for_the_image_and_text_steps():
    proc = py("-m", "mljobs.emr", "steps", "--artifacts", ART, "--jobs", "predict-text,ingest-images,train-text",
              "--images-input", "s3://mljobs-data/digits/", "--images-table", "images.digits",
              "--text-table", "reviews.amazon")
    assert proc.returncode == 0, proc.stderr
    steps = json.loads(proc.stdout)
    assert [s["Name"] for s in steps] == ["mljobs ingest-images images.digits", "mljobs train-text reviews.amazon",
                                          "mljobs predict-text reviews.amazon"]
    args = [s["HadoopJarStep"]["Args"] for s in steps]
    assert args[0][args[0].index(f"{ART}/jobs/ingest_images.py"):] == [
        f"{ART}/jobs/ingest_images.py", "--input", "s3://mljobs-data/digits/", "--table", "images.digits"]
    model = f"{ART}/results/models/text-reviews-amazon"
    assert "--model-dir" in args[1] and args[1][args[1].index("--model-dir") + 1] == model
    assert args[2][args[2].index("--model") + 1] == model
    proc = py("-m", "mljobs.emr", "steps", "--artifacts", ART, "--jobs", "ingest-images", "--images-table", "i.d")
    assert proc.returncode == 2 and "the ingest-images step needs --images-input" in proc.stderr


def test_steps_json_for_the_video_detection_steps():
    """frames -> train-detector -> detect -> detection-metrics: the model goes to
    RESULTS/models/detector-<db>-<name>, which detect reads unless --detector names another."""
    gt = "s3://mljobs-data/helmets/train_labels.csv"
    video_args = ["--jobs", "detection-metrics,detect,train-detector,frames", "--videos-input", "s3://mljobs-data/plays/",
                  "--frames-table", "helmets.frames", "--labels-input", gt, "--gt", gt,
                  "--pred", "helmets.frames_detections"]
    proc = py("-m", "mljobs.emr", "steps", "--artifacts", ART, *video_args)
    assert proc.returncode == 0, proc.stderr
    steps = json.loads(proc.stdout)
    assert [s["Name"] for s in steps] == ["mljobs frames helmets.frames", "mljobs train-detector helmets.frames",
                                          "mljobs detect helmets.frames", "mljobs detection-metrics detection"]
    args = [s["HadoopJarStep"]["Args"] for s in steps]
    tails = [a[a.index(f"{ART}/jobs/{job}.py"):] for a, job in zip(args, ("frames", "train_detector", "detect",
                                                                           "detection_metrics"))]
    model = f"{ART}/results/models/detector-helmets-frames"
    assert tails == [
        [f"{ART}/jobs/frames.py", "--videos", "s3://mljobs-data/plays/", "--table", "helmets.frames"],
        [f"{ART}/jobs/train_detector.py", "--frames", "helmets.frames", "--labels", gt, "--model-dir", model],
        [f"{ART}/jobs/detect.py", "--model", model, "--frames", "helmets.frames", "--out-table",
         "helmets.frames_detections"],
        [f"{ART}/jobs/detection_metrics.py", "--gt", gt, "--pred", "helmets.frames_detections"],
    ]
    proc = py("-m", "mljobs.emr", "steps", "--artifacts", ART, "--jobs", "detect", "--frames-table", "helmets.frames",
              "--detector", "opencv:hog-people", "--detect-args", "--score-min 0.6")
    args = json.loads(proc.stdout)[0]["HadoopJarStep"]["Args"]
    assert args[args.index(f"{ART}/jobs/detect.py"):] == [
        f"{ART}/jobs/detect.py", "--model", "opencv:hog-people", "--frames", "helmets.frames", "--out-table",
        "helmets.frames_detections", "--score-min", "0.6"]
    proc = py("-m", "mljobs.emr", "steps", "--artifacts", ART, "--jobs", "train-detector", "--frames-table", "h.f")
    assert proc.returncode == 2 and "the train-detector step needs --labels-input" in proc.stderr
    proc = py("-m", "mljobs.emr", "steps", "--artifacts", ART, "--jobs", "detect")
    assert proc.returncode == 2 and "the detect step needs --frames-table" in proc.stderr


def test_cluster_configurations_are_valid_emr_input(aws):
    """boto3 validates Configurations against the EMR API model before sending; moto keeps them."""
    _, emr = aws
    for name, want in (("cpu", None), ("gpu", "true")):
        configs = json.loads((ROOT / "conf" / f"emr-cluster-{name}.json").read_text())
        cid = _cluster(emr, configs, f"mljobs-{name}")
        got = {c["Classification"]: c for c in emr.describe_cluster(ClusterId=cid)["Cluster"]["Configurations"]}
        assert got.get("spark", {}).get("Properties", {}).get("enableSparkRapids") == want
        assert got["spark-env"]["Configurations"][0]["Properties"] == {"PYSPARK_PYTHON": "/usr/bin/python3.11"}
        defaults = got["spark-defaults"]["Properties"]
        assert defaults["spark.dynamicAllocation.enabled"] == "false"
        # Where the cluster defaults and our submit properties overlap, they agree.
        from mljobs.config import env_properties

        props = env_properties("emr-gpu" if name == "gpu" else "emr")
        for key, value in defaults.items():
            if key in props and "PYSPARK_PYTHON" not in key:
                assert props[key] == value, key
    assert got["yarn-site"]["Properties"]["yarn.resource-types"] == "yarn.io/gpu"
    sub = {c["Classification"]: c["Properties"] for c in got["container-executor"]["Configurations"]}
    assert sub["gpu"] == {"module.enabled": "true"}


def _cluster(emr, configs, name):
    return emr.run_job_flow(
        Name=name, ReleaseLabel="emr-7.9.0", Applications=[{"Name": "Spark"}, {"Name": "Livy"}],
        Configurations=configs, JobFlowRole="EMR_EC2_DefaultRole", ServiceRole="EMR_DefaultRole",
        Instances={"InstanceGroups": [
            {"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1},
            {"InstanceRole": "CORE", "InstanceType": "g5.2xlarge", "InstanceCount": 2}],
            "KeepJobFlowAliveWhenNoSteps": True},
    )["JobFlowId"]


def _moto_steps(cluster_id):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.emr.models import emr_backends

    return emr_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].clusters[cluster_id].steps


def test_upload_then_run_steps_and_report_states(packaged, moto, aws, tmp_path):
    out, package_proc = packaged
    s3, emr = aws
    s3.create_bucket(Bucket="mljobs-art")
    up = py("-m", "mljobs.emr", "upload", "--artifacts", ART, "--build-dir", str(out), env_extra=moto)
    assert up.returncode == 0, up.stderr
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="mljobs-art", Prefix="releases/")["Contents"]}
    want = {f"releases/0.1.0/{n}" for n in (f"mljobs-{VERSION}.zip", f"mljobs-conf-{VERSION}.tar.gz",
                                            f"mljobs-{VERSION}-py3-none-any.whl", "mljobs-env-py311-linux-x86_64.tar.gz",
                                            "jobs/ingest.py", "jobs/tune.py", "jobs/predict.py", "jobs/bias.py", "jobs/explain.py",
                                            "jobs/detection_metrics.py", "jobs/sql.py", "conf/emr-gpu.properties",
                                            "conf/emr-cluster-gpu.json", "conf/tune.yaml")}
    assert want <= keys
    body = s3.get_object(Bucket="mljobs-art", Key=f"releases/0.1.0/mljobs-{VERSION}.zip")["Body"].read()
    assert body == (out / f"mljobs-{VERSION}.zip").read_bytes()
    assert json.loads(up.stdout.splitlines()[-1])["status"] == "ok"

    cid = _cluster(emr, json.loads((ROOT / "conf" / "emr-cluster-gpu.json").read_text()), "mljobs-run")
    dry = py("-m", "mljobs.emr", "run", "--cluster-id", cid, "--artifacts", ART, "--env", "emr-gpu", "--dry-run",
             *PIPELINE_ARGS, env_extra=moto)
    assert dry.returncode == 0 and emr.list_steps(ClusterId=cid)["Steps"] == []  # dry run sends nothing

    # The test plays the cluster: once the runner has reported the first step RUNNING (moto
    # leaves steps there), it finishes them, one failing, the way CANCEL_AND_WAIT leaves a
    # pipeline (later steps cancelled). Reading the runner's output avoids a timing race.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib"), "PYTHONUNBUFFERED": "1", **PLANTED, **moto}
    env.pop("MLJOBS_DATA_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "mljobs.emr", "run", "--cluster-id", cid, "--artifacts", ART,
                             "--env", "emr-gpu", "--poll-seconds", "0.3", "--timeout", "90", *PIPELINE_ARGS],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if re.search(r"mljobs ingest airline.flights: RUNNING", line):
            for step, state in zip(_moto_steps(cid), ("COMPLETED",) * 4 + ("FAILED", "CANCELLED")):
                step.state = state
            break
    rest, err = proc.communicate(timeout=120)
    run = subprocess.CompletedProcess(proc.args, proc.returncode, "".join(seen) + rest, err)
    assert run.returncode == 1, run.stdout + run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    assert report["status"] == "failed" and report["cluster_id"] == cid
    assert [(s["name"].split()[1], s["state"]) for s in report["steps"]] == [
        ("ingest", "COMPLETED"), ("tune", "COMPLETED"), ("predict", "COMPLETED"), ("bias", "COMPLETED"),
        ("explain", "FAILED"), ("detection-metrics", "CANCELLED")]
    assert re.search(r"\[emr\] s-\w+ mljobs ingest airline.flights: RUNNING", run.stdout)
    assert re.search(r"\[emr\] s-\w+ mljobs explain airline.flights: FAILED", run.stdout)

    # What the cluster received is exactly the dry-run step JSON.
    sent = sorted(emr.list_steps(ClusterId=cid)["Steps"], key=lambda s: s["Id"])
    by_name = {s["Name"]: s["Config"]["Args"] for s in sent}
    assert by_name == {s["Name"]: s["HadoopJarStep"]["Args"] for s in json.loads(dry.stdout)}

    # Steps that never finish: the runner gives up at --timeout with exit 124.
    cid2 = _cluster(emr, json.loads((ROOT / "conf" / "emr-cluster-cpu.json").read_text()), "mljobs-stuck")
    stuck = py("-m", "mljobs.emr", "run", "--cluster-id", cid2, "--artifacts", ART, "--jobs", "ingest",
               "--input", "s3://d/x", "--table", "a.b", "--poll-seconds", "0.2", "--timeout", "1", env_extra=moto)
    assert stuck.returncode == 124, stuck.stderr
    assert json.loads(stuck.stdout.splitlines()[-1])["steps"][0]["state"] == "RUNNING"

    # Security: nothing produced carries the planted credentials.
    texts = {"package output": package_proc.stdout + package_proc.stderr}
    for name, proc in (("upload", up), ("run --dry-run", dry), ("run", run), ("run (stuck)", stuck)):
        texts[name] = proc.stdout + proc.stderr
    texts["steps on the cluster"] = json.dumps(emr.list_steps(ClusterId=cid), default=str)
    for f in out.rglob("*"):
        if f.is_file():
            texts.update(_archive_texts(str(f), f.read_bytes()))
    for key in keys:
        texts.update(_archive_texts(f"s3://mljobs-art/{key}", s3.get_object(Bucket="mljobs-art", Key=key)["Body"].read()))
    assert len(texts) > 100  # archives were opened, not just listed
    for where, text in texts.items():
        for secret in PLANTED.values():
            assert secret not in text, f"planted credential found in {where}"


def _archive_texts(name: str, data: bytes) -> dict[str, str]:
    """The bytes of a file and of every member of a zip/wheel/tar.gz, as text to search."""
    out = {name: data.decode("latin-1")}
    if name.endswith((".zip", ".whl")):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for n in z.namelist():
                out[f"{name}!{n}"] = z.read(n).decode("latin-1")
    elif name.endswith(".tar.gz"):
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as t:
            for m in t.getmembers():
                if m.isfile():
                    out[f"{name}!{m.name}"] = t.extractfile(m).read().decode("latin-1")
    return out


def test_no_credentials_committed():
    """Tracked files hold no AWS access key ids or secret assignments (the planted fakes aside)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert "spark-submit.sh" in files and "conf/emr-cluster-gpu.json" in files
    key_id = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
    secret = re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}")
    for rel in files:
        path = ROOT / rel
        if rel in ("tests/helpers.py", "tests/test_emr.py") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        assert not key_id.search(text) and not secret.search(text), rel


@pytest.mark.parametrize("job,args", [
    ("ingest", ["--input", "x.csv", "--table"]),
    ("tune", ["--study", "s", "--table"]),
    ("explain", ["--model", "{tmp}", "--table"]),
    ("predict", ["--model", "{tmp}", "--table"]),
    ("bias", ["--label", "y", "--facet", "f", "--table"]),
    ("detection_metrics", ["--pred", "p.csv", "--gt"]),
])
def test_sql_in_a_table_name_is_rejected_before_spark_starts(job, args, tmp_path):
    summary = tmp_path / "s.json"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]  # explain checks its model dir first
    proc = py(str(ROOT / "jobs" / f"{job}.py"), *args, "a.b; DROP TABLE x", "--summary", str(summary), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert re.search(r"^error: invalid table name '(a\.)?b; DROP TABLE x'", proc.stderr), proc.stderr
    assert json.loads(summary.read_text())["status"] == "failed"
    assert "SparkContext" not in proc.stdout + proc.stderr and "Ivy" not in proc.stderr


@pytest.mark.parametrize("job,args,message", [
    ("tune", ["--table", "a.b", "--study", "s", "--model-dir", "http://bkt/models/s"], "unsupported scheme http://"),
    ("explain", ["--table", "a.b", "--model", "s3://bkt/m", "--output", "s3://Bad_Bucket/x"],
     "expected s3://BUCKET/PREFIX"),
    ("detection_metrics", ["--gt", "a.gt", "--pred", "a.pred", "--plots", "gs://bkt/plots"], "unsupported scheme gs://"),
])
def test_output_locations_are_checked_before_spark_starts(job, args, message):
    """Models, plots and reports go to local paths or s3://, s3a://, hdfs:// (tests/test_s3.py);
    anything else fails fast instead of after hours of tuning."""
    proc = py(str(ROOT / "jobs" / f"{job}.py"), *args, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "SparkContext" not in proc.stderr
