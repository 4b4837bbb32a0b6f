"""SparkSession for every job: Hive over a local Derby metastore server and warehouse by default,
the cluster's metastore on EMR.

The environment comes from the Spark property ``spark.mljobs.env`` (set by
``spark-submit.sh --env``), else ``$MLJOBS_ENV``, else ``local``. Only ``local`` gets the
metastore (mljobs.metastore: a shared server, or embedded) and warehouse under the data directory; on EMR the same code uses
whatever metastore the cluster is configured with (Glue or Hive).
"""
from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from pyspark import SparkConf
from pyspark.sql import SparkSession

from mljobs.config import ENVS, JAVA_OPTIONS, RESULTS_CONF, conf_dir, env_properties
from mljobs.datadir import DATA_DIR_ENV, DEFAULT_DATA_DIR, resolve_data_dir  # noqa: F401 (re-exported)
from mljobs.errors import MljobsError
from mljobs.uris import is_uri, local_of

ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"


def launch_conf() -> SparkConf:
    """The properties this driver was launched with. Under spark-submit the JVM is already up
    (PYSPARK_GATEWAY_PORT is set) with every --conf as a system property, but SparkConf()
    only sees them through a connected gateway: connect first, or an empty conf comes back
    and the job would think it runs locally (embedded metastore, local master) on YARN."""
    from pyspark import SparkContext

    if os.environ.get("PYSPARK_GATEWAY_PORT") and SparkContext._gateway is None:
        SparkContext._ensure_initialized()
    return SparkConf()


def current_env(conf: SparkConf | None = None) -> str:
    conf = conf or launch_conf()
    env = conf.get("spark.mljobs.env", None) or os.environ.get("MLJOBS_ENV") or "local"
    if env not in ENVS:
        raise MljobsError(f"unknown environment {env!r}; valid: {', '.join(ENVS)}")
    return env


def env_of(spark: SparkSession) -> str:
    """The environment a running session was started for. Reads the context's own conf:
    SparkContext.getConf() copies every property through the gateway (16 ms a call, which
    every file-system call used to pay)."""
    sc = spark.sparkContext
    return current_env(getattr(sc, "_conf", None) or sc.getConf())


METASTORE_CONF = "spark.mljobs.metastore"
METASTORE_ENV = "MLJOBS_METASTORE"
JDBC_DRIVERS = {"postgresql": "org.postgresql.Driver", "mysql": "com.mysql.cj.jdbc.Driver",
                "mariadb": "org.mariadb.jdbc.Driver", "derby": "org.apache.derby.jdbc.ClientDriver"}


def metastore_mode(conf: SparkConf | None = None, given: str | None = None) -> str:
    """server (the default: docs/metastore.md), embedded, jdbc:... or thrift://...: given (a
    build_session conf), else spark.mljobs.metastore, else $MLJOBS_METASTORE."""
    conf = conf or SparkConf()
    mode = given or conf.get(METASTORE_CONF, None) or os.environ.get(METASTORE_ENV) or "server"
    if mode not in ("server", "embedded") and not mode.startswith(("jdbc:", "thrift://")):
        raise MljobsError(f"--metastore must be server, embedded, jdbc:... or thrift://host:port, got {mode!r}")
    return mode


def metastore_conf(data_dir: Path, mode: str) -> dict[str, str]:
    """The Hive client settings of one metastore mode (the server is started here when needed)."""
    if mode.startswith("thrift://"):
        return {"spark.hadoop.hive.metastore.uris": mode}
    if mode.startswith("jdbc:"):
        scheme = mode.split(":")[1]
        out = {"spark.hadoop.javax.jdo.option.ConnectionURL": mode}
        if scheme in JDBC_DRIVERS:
            out["spark.hadoop.javax.jdo.option.ConnectionDriverName"] = JDBC_DRIVERS[scheme]
        return out
    from mljobs import metastore

    if mode == "embedded":
        metastore.check_not_held(data_dir)  # before Hive prints pages of Derby errors
        url = f"jdbc:derby:;databaseName={data_dir / 'metastore_db'};create=true"
        return {"spark.hadoop.javax.jdo.option.ConnectionURL": url}
    rec = metastore.ensure_server(data_dir)
    metastore.check_not_held(data_dir, server_pid=rec["pid"])  # open embedded elsewhere: the server cannot
    return {"spark.hadoop.javax.jdo.option.ConnectionURL": metastore.connection_url(data_dir, rec["port"]),
            "spark.hadoop.javax.jdo.option.ConnectionDriverName": metastore.CLIENT_DRIVER,
            # A server gone mid-job fails the job in seconds: BoneCP's pool and Hive's handler
            # retried a refused connection for over 10 minutes (a local connect costs ~1 ms).
            "spark.hadoop.datanucleus.connectionPoolingType": "None",
            "spark.hadoop.hive.hmshandler.retry.attempts": "2",
            "spark.hadoop.hive.hmshandler.retry.interval": "1000ms",
            # for in-process builds (tests, notebook); spark-submit gets --driver-class-path
            "spark.driver.extraClassPath": str(metastore.client_jar())}


def local_hive_conf(data_dir: Path, mode: str) -> dict[str, str]:
    """The metastore (see metastore_conf) and warehouse under data_dir, so tables persist between jobs."""
    return {
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": str(data_dir / "warehouse"),
        **metastore_conf(data_dir, mode),
        # derby.log goes to the data dir instead of the working directory; Spark logs
        # warnings only (a JVM started by spark-submit.sh gets the same file there).
        JAVA_OPTIONS: f"-Dderby.system.home={data_dir} "
        f"-Dlog4j2.configurationFile=file:{conf_dir() / 'log4j2.properties'}",
    }


def s3a_env_conf(environ=os.environ) -> dict[str, str]:
    """s3a settings from the standard AWS variables, off EMR (EMRFS configures itself there).

    AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (as boto3 reads them) point s3a at an S3-compatible
    server (MinIO, a local emulator) with path-style addressing; AWS_REGION sets the signing
    region. Credentials are never put in the Spark conf: s3a's default provider chain reads
    the environment variables, the profile or the instance role itself.
    """
    conf = {}
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(endpoint.startswith("https://")).lower()
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = region
    return conf


# Behaviour our code relies on, whatever the environment.
SESSION_DEFAULTS = {
    # Casts of bad values give NULL (then quarantined) instead of failing the job; Spark 4
    # turns ANSI on by default, so say it explicitly.
    "spark.sql.ansi.enabled": "false",
    # The CSV reader must tokenise every column, or rows with too few/many fields are not
    # flagged as malformed and values shift silently.
    "spark.sql.csv.parser.columnPruning.enabled": "false",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    # Partitioned writes keep a writer open per partition instead of sorting each task's
    # rows by partition first (a year of flights is 12 partitions).
    "spark.sql.maxConcurrentOutputFileWriters": "32",
    "spark.sql.session.timeZone": "UTC",
}


def build_session(
    app_name: str,
    data_dir: str | os.PathLike | None = None,
    conf: dict[str, str] | None = None,
) -> SparkSession:
    """Get or create the job's SparkSession with Hive support.

    Properties already set (by spark-submit --conf, or an existing session) win over the
    environment's conf/<env>.properties, which win over our defaults.
    """
    spark_conf = launch_conf()
    env = current_env(spark_conf)
    settings: dict[str, str] = dict(SESSION_DEFAULTS)
    settings.update(env_properties(env))
    ddir = resolve_data_dir(data_dir)
    java_opts = [settings.pop(JAVA_OPTIONS, "")]  # the environment's, ours, the caller's: all kept, in that order
    if env == "local":
        ddir.mkdir(parents=True, exist_ok=True)
        hive = local_hive_conf(ddir, metastore_mode(spark_conf, (conf or {}).get(METASTORE_CONF)))
        java_opts.append(hive.pop(JAVA_OPTIONS, ""))
        settings.update(hive)
        settings.update(s3a_env_conf())
        settings.setdefault("spark.master", "local[*]")
        # Local Python workers run the interpreter that runs the job (its packages), not whatever
        # `python3` is first on PATH; read once, when this process starts the SparkContext.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    java_opts.append((conf or {}).get(JAVA_OPTIONS, ""))
    settings.update(conf or {})
    if any(java_opts):
        settings[JAVA_OPTIONS] = " ".join(o for o in java_opts if o)
    settings["spark.mljobs.env"] = env
    settings["spark.mljobs.dataDir"] = str(ddir)

    builder = SparkSession.builder.appName(app_name).enableHiveSupport()
    for key, value in settings.items():
        if key in ("spark.sql.catalogImplementation",):
            continue
        if spark_conf.contains(key) and key not in (conf or {}):
            continue  # spark-submit --conf wins
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if env == "local":
        # Harmless when the JVM already had it; needed when spark-submit started the JVM.
        spark.sparkContext._jvm.java.lang.System.setProperty("derby.system.home", str(ddir))
    spark.sparkContext.setLogLevel(spark.conf.get("spark.mljobs.logLevel", "WARN"))
    return spark


def data_dir_of(spark: SparkSession) -> Path:
    return Path(spark.conf.get("spark.mljobs.dataDir", str(resolve_data_dir())))


def results_root(spark: SparkSession) -> str | Path:
    """Where models, plots and reports go by default: ``spark.mljobs.resultsDir`` (a local path
    or a URI such as s3://bucket/prefix; the EMR steps set it) or else the data directory.
    On a cluster a local default lands in a YARN container's scratch directory and goes
    with it, so cluster runs should set it or pass each job's output flags."""
    root = spark.conf.get(RESULTS_CONF, "") or ""
    if not root:
        return data_dir_of(spark)
    return root.rstrip("/") if is_uri(root) else local_of(root).expanduser().resolve()


@contextmanager
def session_conf(spark: SparkSession, settings: dict[str, str]):
    """SQL settings of the session for the work done inside; the session's own back afterwards."""
    old = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, str(value))
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def arrow_batch(spark: SparkSession, rows: int):
    """Arrow batches of ``rows`` rows for the Python tasks run inside."""
    return session_conf(spark, {ARROW_BATCH: str(rows)})


class StageProgress:
    """Prints Spark stage progress every few seconds while a long action runs."""

    def __init__(self, spark: SparkSession, progress, every_s: float = 10.0):
        self.tracker = spark.sparkContext.statusTracker()
        self.progress = progress
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                parts = []
                for sid in self.tracker.getActiveStageIds():
                    info = self.tracker.getStageInfo(sid)
                    if info:
                        parts.append(f"stage {sid}: {info.numCompletedTasks}/{info.numTasks} tasks")
                if parts:
                    self.progress("; ".join(parts))
            except Exception:  # progress is best effort; never break the job
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=1)
        return False
