"""One SparkSession for the whole suite, with its own temporary data dir: the metastore (a server, the
local default, stopped at the end; embedded if $MLJOBS_METASTORE=embedded) and the warehouse."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["PYSPARK_PYTHON"] = sys.executable
# Spark's Python workers import mljobs from this checkout's lib/ too (a venv's editable install may
# point at another checkout, e.g. a git worktree sharing one .venv).
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "lib"), os.environ.get("PYTHONPATH")]))
SESSION_DATA = "mljobs-data"  # the session fixture's data dir (its server runs to the end)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s; still runs in CI")


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from mljobs.session import build_session

    from mljobs import jars

    data_dir = tmp_path_factory.mktemp(SESSION_DATA)
    # The s3a connector (hadoop-aws + AWS SDK, fetched by the test command), for tests/test_s3.py.
    s3a = ",".join(str(p) for p in jars.fetch_all("s3a"))
    session = build_session(
        "mljobs-tests",
        data_dir=data_dir,
        conf={
            "spark.master": "local[2]",
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "2",
            "spark.driver.memory": "2g",
            "spark.jars": s3a,
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={data_dir} "
            f"-Dlog4j2.configurationFile=file:{ROOT / 'conf' / 'log4j2.properties'}",
        },
    )
    yield session
    session.stop()
    from mljobs import metastore

    metastore.stop(data_dir)


@pytest.fixture(scope="session")
def bts_frame():
    """The real 2013 flights in BTS layout (pandas), built once."""
    from mljobs.datasets.airline import load_bts_frame

    return load_bts_frame()


@pytest.fixture(scope="session")
def moto_env():
    """A moto server (S3, EMR, ...) on 127.0.0.1 for the whole run; the variables that point
    boto3 and s3a (mljobs.session.s3a_env_conf) at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
    server.stop()


@pytest.fixture(scope="module", autouse=True)
def stop_metastore_servers(tmp_path_factory):
    """Subprocess jobs start a metastore server in their tmp data dir and leave it running (as
    they should for a user): after each module, stop every one under this run's temp dir but
    the session's, so at most a module's servers are alive at once."""
    yield
    from mljobs import metastore

    for record in tmp_path_factory.getbasetemp().rglob(metastore.RECORD):
        if not record.parent.name.startswith(SESSION_DATA):
            metastore.stop(record.parent)


@pytest.fixture(scope="session", autouse=True)
def no_server_left_in_the_checkout():
    """A test that runs a job without --data-dir uses ./.mljobs: a server it started there is stopped."""
    from mljobs import metastore

    before = metastore.running(ROOT / ".mljobs")
    yield
    if before is None and metastore.running(ROOT / ".mljobs"):
        metastore.stop(ROOT / ".mljobs")
