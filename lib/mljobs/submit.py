"""The spark-submit command of a job, built in one place: ``./spark-submit.sh`` runs it (or
prints it with ``--dry-run``) and the EMR steps (``mljobs.emr``) send the same command.

    python -m mljobs.submit [--env local|emr|emr-gpu] [--artifacts s3://BUCKET/PREFIX] [--dry-run]
                            [--conf K=V ...] [--metastore MODE] JOB [job args]
    python -m mljobs.submit metastore start|stop|status [--data-dir DIR] [--port N]

local: embedded Spark + Hive (the metastore a local server by default: mljobs.metastore), the
library from lib/, the s3a jars when an argument names S3.
emr, emr-gpu: YARN cluster mode with conf/<env>.properties; with ``--artifacts`` (or
$MLJOBS_ARTIFACTS) everything comes from that S3 prefix (job file, --py-files zip, the
dependency and conf archives), else from the checkout (the zip is built under build/).
Runs on the plain python3 of an EMR primary node: standard library and mljobs only.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from mljobs import __version__
from mljobs.config import C2, ENVS, JAVA_OPTIONS, LOCAL_C2_JOBS, LOCAL_JOB_CONF, env_properties, project_root
from mljobs.errors import MljobsError
from mljobs.registry import JOBS, check_name, package_of
from mljobs.uris import s3_join

# The names scripts/package.sh gives its outputs (and the artefacts prefix holds).
ENV_ARCHIVE = "mljobs-env-py311-linux-x86_64.tar.gz"
PY_FILES_ZIP = f"mljobs-{__version__}.zip"
CONF_ARCHIVE = f"mljobs-conf-{__version__}.tar.gz"
# Keys the shipped environment takes over from conf/<env>.properties.
PYTHON_KEYS = ("spark.yarn.appMasterEnv.PYSPARK_PYTHON", "spark.executorEnv.PYSPARK_PYTHON")
SHIPPED_PYTHON = "./environment/bin/python"
USAGE = ("usage: ./spark-submit.sh [--env local|emr|emr-gpu] [--artifacts s3://BUCKET/PREFIX] [--dry-run] "
         "[--conf K=V ...] [--metastore server|embedded|jdbc:...|thrift://...] JOB [job args]\n"
         "       ./spark-submit.sh metastore start|stop|status [--data-dir DIR] [--port N]\n"
         "       ./spark-submit.sh package [--out DIR] [--zip-only] [--no-env]\n"
         f"jobs: {' '.join(JOBS)}")


def shipped_env_conf() -> dict[str, str]:
    """What makes the driver and executors use the shipped environment and conf archive."""
    return {"spark.yarn.appMasterEnv.PYSPARK_PYTHON": SHIPPED_PYTHON,
            "spark.executorEnv.PYSPARK_PYTHON": SHIPPED_PYTHON,
            "spark.yarn.appMasterEnv.MLJOBS_CONF_DIR": "./mljobs-conf"}


def _conf_args(env: str, artifacts: str | None, extra_conf, job: str = "") -> list[str]:
    props = {k: v for k, v in env_properties(env).items() if not (artifacts and k in PYTHON_KEYS)}
    if env == "local":
        props.pop(JAVA_OPTIONS, None)  # joined into --driver-java-options (_local_args), which would drop it
        props.update(LOCAL_JOB_CONF.get(job, {}))
    props["spark.mljobs.env"] = env
    if artifacts:
        props.update(shipped_env_conf())
    out = [a for k, v in props.items() for a in ("--conf", f"{k}={v}")]
    for kv in extra_conf:
        if "=" not in kv:
            raise MljobsError(f"--conf expects KEY=VALUE, got {kv!r}")
        out += ["--conf", kv]
    return out


def _local_args(root: Path, names: list[str], dry_run: bool, user_java: list[str] = ()) -> list[str]:
    # One --driver-java-options (spark-submit keeps only one): conf/local.properties', ours, the user's last.
    opts = [env_properties("local").get(JAVA_OPTIONS, ""),
            f"-Dlog4j2.configurationFile=file:{root / 'conf' / 'log4j2.properties'}", *user_java]
    args = ["--driver-java-options", " ".join(o for o in opts if o)]
    # The Derby client for the local metastore server: on the driver's class path before the
    # JVM starts (spark-submit starts it before any Python runs).
    from mljobs import metastore

    client = metastore.client_jar()
    if client.exists():
        args += ["--driver-class-path", str(client)]
    # S3 off EMR is the s3a connector: hadoop-aws + AWS SDK jars for the bundled Hadoop, from
    # the jar cache (downloaded once from Maven Central), added only when an argument names S3.
    if any("s3://" in a or "s3a://" in a for a in names):
        from mljobs import jars

        paths = jars.jar_paths("s3a") if dry_run else jars.fetch_all("s3a")
        args += ["--jars", ",".join(str(p) for p in paths)]
    return args


def _cluster_args(root: Path, artifacts: str | None, dry_run: bool) -> list[str]:
    if artifacts:
        return ["--py-files", s3_join(artifacts, PY_FILES_ZIP),
                "--archives", f"{s3_join(artifacts, ENV_ARCHIVE)}#environment,{s3_join(artifacts, CONF_ARCHIVE)}#mljobs-conf"]
    zip_path = root / "build" / PY_FILES_ZIP
    if not dry_run or not zip_path.exists():
        subprocess.run([str(root / "scripts" / "package.sh"), "--zip-only", "--out", str(root / "build")],
                       check=True, stdout=subprocess.DEVNULL)
    return ["--py-files", str(zip_path)]


def command(env: str, job: str, job_args: list[str], artifacts: str | None = None, extra_conf=(),
            submit: str = "spark-submit", dry_run: bool = False, root: Path | None = None) -> list[str]:
    """The whole spark-submit command line of one job run."""
    root = root or project_root()
    if env not in ENVS:
        raise MljobsError(f"unknown environment {env!r}; valid: {' '.join(ENVS)}")
    check_name(job)
    if artifacts is not None:
        if env == "local":
            raise MljobsError("--artifacts is for --env emr or emr-gpu (local runs use the checkout)")
        try:
            artifacts = s3_join(artifacts)
        except MljobsError:
            raise MljobsError(f"--artifacts must be s3://BUCKET[/PREFIX], got {artifacts!r}") from None
    # Locally the user's driver options join --driver-java-options (_local_args) instead of a --conf it would drop.
    is_java = [env == "local" and kv.startswith(f"{JAVA_OPTIONS}=") for kv in extra_conf]
    user_java = [kv.split("=", 1)[1] for kv, j in zip(extra_conf, is_java) if j]
    cmd = [submit, *_conf_args(env, artifacts, [kv for kv, j in zip(extra_conf, is_java) if not j], job)]
    job_file = f"{package_of(job)}.py"
    if env == "local":
        jit = [C2] if job in LOCAL_C2_JOBS else []
        cmd += _local_args(root, [*job_args, *extra_conf], dry_run, jit + user_java)
        return cmd + [str(root / "jobs" / job_file), *job_args]
    cmd += _cluster_args(root, artifacts, dry_run)
    return cmd + [s3_join(artifacts, "jobs", job_file) if artifacts else str(root / "jobs" / job_file), *job_args]


def find_spark_submit(root: Path) -> str:
    home = os.environ.get("SPARK_HOME")
    for cand in ([Path(home) / "bin" / "spark-submit"] if home else []) + [root / ".venv" / "bin" / "spark-submit"]:
        if os.access(cand, os.X_OK):
            return str(cand)
    found = shutil.which("spark-submit")
    if not found:
        raise MljobsError("spark-submit not found; run ./scripts/bootstrap.sh (creates .venv) or set SPARK_HOME")
    return found


def _parse(argv: list[str]) -> dict:
    opts = {"env": os.environ.get("MLJOBS_ENV", "local"), "artifacts": os.environ.get("MLJOBS_ARTIFACTS") or None,
            "artifacts_flag": False, "dry_run": False, "conf": []}
    while argv and argv[0].startswith("--"):
        flag, _, inline = argv.pop(0).partition("=")
        if flag == "--dry-run":
            opts["dry_run"] = True
            continue
        if flag not in ("--env", "--artifacts", "--conf", "--metastore"):
            raise MljobsError(f"unknown option {flag}")
        if not inline and not argv:
            raise MljobsError(f"{flag} needs a value")
        value = inline or argv.pop(0)
        if flag == "--conf":
            opts["conf"].append(value)
        elif flag == "--metastore":
            opts["conf"].append(f"spark.mljobs.metastore={value}")
        else:
            opts[flag[2:]] = value
            opts["artifacts_flag"] |= flag == "--artifacts"
    if not argv:
        raise MljobsError("no job given")
    if opts["env"] == "local" and not opts["artifacts_flag"]:
        opts["artifacts"] = None  # an exported MLJOBS_ARTIFACTS is for cluster runs only
    opts["job"], opts["args"] = argv[0], argv[1:]
    return opts


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr)
        return 0
    if argv and argv[0] == "metastore":
        from mljobs import metastore

        return metastore.main(argv[1:])
    root = project_root()
    try:
        o = _parse(argv)
        submit = "spark-submit" if o["dry_run"] and o["env"] != "local" else find_spark_submit(root)
        cmd = command(o["env"], o["job"], o["args"], o["artifacts"], o["conf"], submit, o["dry_run"], root)
    except MljobsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return 2
    if o["dry_run"]:
        print(shlex.join(cmd))
        return 0
    if o["env"] == "local":
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "lib"), os.environ.get("PYTHONPATH")]))
        if (root / ".venv" / "bin" / "python").exists():
            os.environ.setdefault("PYSPARK_PYTHON", str(root / ".venv" / "bin" / "python"))
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    sys.stdout.flush()
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    sys.exit(main())
