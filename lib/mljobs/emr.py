"""Amazon EMR: put the artefacts on S3, build ``command-runner.jar`` spark-submit steps for the
pipeline ingest -> tune -> explain -> detection-metrics, add them to a cluster and follow them.

    python -m mljobs.emr upload --artifacts s3://BUCKET/PREFIX            # after ./spark-submit.sh package
    python -m mljobs.emr steps  --artifacts s3://BUCKET/PREFIX [pipeline options]   # prints the step JSON
    python -m mljobs.emr run    --cluster-id j-XXXX --artifacts ... [pipeline options] [--dry-run]
    python -m mljobs.emr livy   --artifacts s3://BUCKET/PREFIX [--env emr-gpu]  # SparkMagic's %%configure cell

AWS access goes through boto3's default credential chain (the instance profile or IAM role
on EMR/EC2, a named profile, SSO): this module never takes, stores or prints keys, and the
steps it builds carry none. ``AWS_ENDPOINT_URL`` points boto3 at another endpoint (tests use
a local emulator).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mljobs import __version__
from mljobs.aws import client as _client
from mljobs.config import ENVS, RESULTS_CONF, env_properties, parse_table_name, project_root
from mljobs.errors import MljobsError
from mljobs.submit import (CONF_ARCHIVE, ENV_ARCHIVE, PY_FILES_ZIP, PYTHON_KEYS, SHIPPED_PYTHON,  # noqa: F401
                           command, shipped_env_conf)
from mljobs.uris import parse_s3_uri, s3_join

WHEEL = f"mljobs-{__version__}-py3-none-any.whl"
ACTIONS_ON_FAILURE = ("CANCEL_AND_WAIT", "CONTINUE", "TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW")
TERMINAL_STATES = ("COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED")
# Set by the Livy server itself (its default spark-blacklist.conf refuses them in a session request).
LIVY_OWNED = ("spark.master", "spark.submit.deployMode")
def submit_args(env: str, artifacts: str, job: str, job_args: list[str], extra_conf: list[str] = ()) -> list[str]:
    """The spark-submit command line of ``./spark-submit.sh --env ENV --artifacts URI JOB ...``
    (``mljobs.submit.command``), with the cluster's ``spark-submit`` in front."""
    if env not in ENVS or env == "local":
        raise MljobsError(f"EMR steps run with --env emr or emr-gpu, not {env!r}")
    return command(env, job, job_args, artifacts, extra_conf, dry_run=True)


def livy_session(artifacts: str, env: str = "emr", extra_conf: list[str] = ()) -> dict:
    """The Livy session body (SparkMagic ``%%configure -f``) that runs mljobs from the artefacts
    under ``artifacts``, as a step of ``submit_args`` does: the same zip, archives and properties.

    The session is created by Livy, not by ``mljobs.session.build_session``, so the session
    defaults that function applies (``SESSION_DEFAULTS``) are in the body too. Livy starts the
    driver's Python from ``spark.pyspark.python``, hence that key besides the two environment
    variables. ``spark.master`` and the deploy mode belong to the Livy server."""
    from mljobs.session import SESSION_DEFAULTS

    if env not in ENVS or env == "local":
        raise MljobsError(f"a Livy session runs with --env emr or emr-gpu, not {env!r}")
    artifacts = s3_join(artifacts)
    conf = dict(SESSION_DEFAULTS)
    conf.update({k: v for k, v in env_properties(env).items() if k not in PYTHON_KEYS + LIVY_OWNED})
    conf["spark.mljobs.env"] = env
    conf["spark.pyspark.python"] = SHIPPED_PYTHON
    conf.update(shipped_env_conf())
    for kv in extra_conf:
        if "=" not in kv:
            raise MljobsError(f"--conf expects KEY=VALUE, got {kv!r}")
        key, value = kv.split("=", 1)
        if key in LIVY_OWNED:
            raise MljobsError(f"{key} is set by the Livy server, not by a session")
        conf[key] = value
    return {
        "pyFiles": [s3_join(artifacts, PY_FILES_ZIP)],
        "archives": [f"{s3_join(artifacts, ENV_ARCHIVE)}#environment", f"{s3_join(artifacts, CONF_ARCHIVE)}#mljobs-conf"],
        "conf": conf,
    }


def configure_cell(artifacts: str, env: str = "emr", extra_conf: list[str] = ()) -> str:
    """The text of a SparkMagic ``%%configure -f`` cell for ``livy_session``."""
    return "%%configure -f\n" + json.dumps(livy_session(artifacts, env, extra_conf), indent=2) + "\n"


@dataclass(frozen=True)
class EmrStep:
    """How a job runs as a step of the EMR pipeline (declared by the job: ``EMR_STEP``).

    ``needs``: the Pipeline fields it cannot run without; ``args(pipeline)``: its job flags;
    ``label(pipeline)``: what the step's name shows."""

    needs: tuple[str, ...]
    args: Callable[["Pipeline"], list[str]]
    label: Callable[["Pipeline"], str]
    default: bool = True  # one of the steps run when --jobs is not given


def default_jobs() -> tuple[str, ...]:
    """The steps run when --jobs is not given (the flights pipeline)."""
    return tuple(j for j in pipeline_jobs() if _step(j).default)


def pipeline_jobs() -> tuple[str, ...]:
    """The jobs that declare an EMR step, in pipeline (registry) order."""
    from mljobs.registry import JOBS, job_module

    return tuple(j for j in JOBS if getattr(job_module(j), "EMR_STEP", None) is not None)


def _step(job: str) -> EmrStep:
    from mljobs.registry import job_module

    return job_module(job).EMR_STEP


@dataclass
class Pipeline:
    """What the steps need; each job's own flags can be added with ``<job>_args``."""

    artifacts: str
    env: str = "emr"
    jobs: list[str] = field(default_factory=lambda: list(default_jobs()))
    input: list[str] = field(default_factory=list)
    table: str | None = None
    study: str | None = None
    where: str | None = None
    gt: str | None = None
    pred: str | None = None
    facet: str = "Reporting_Airline"  # bias: the sensitive attribute (kept in the predictions by predict)
    label: str = "ArrDel15"  # bias: the label column of the table (predict copies it to the predictions)
    images_input: str | None = None  # ingest-images: the image folders (s3://...)
    images_table: str | None = None  # ingest-images: the images table DB.NAME
    videos_input: str | None = None  # frames: the videos (s3://...)
    frames_table: str | None = None  # frames: the frames table DB.NAME (train-detector and detect read it)
    labels_input: str | None = None  # train-detector: the boxes (CSV/Parquet s3://... or a table DB.NAME)
    detector: str | None = None  # detect: its --model (default: the model of the train-detector step)
    text_table: str | None = None  # train-text / predict-text: the reviews table DB.NAME
    text_col: str = "text"
    text_label_col: str = "label"
    results: str | None = None
    action_on_failure: str = "CANCEL_AND_WAIT"
    conf: list[str] = field(default_factory=list)
    extra_args: dict[str, list[str]] = field(default_factory=dict)

    def validate(self) -> "Pipeline":
        parse_s3_uri(self.artifacts)
        if self.results:
            parse_s3_uri(self.results)
        if self.env not in ("emr", "emr-gpu"):
            raise MljobsError(f"--env must be emr or emr-gpu, got {self.env!r}")
        if self.action_on_failure not in ACTIONS_ON_FAILURE:
            raise MljobsError(f"--action-on-failure must be one of {', '.join(ACTIONS_ON_FAILURE)}")
        order = pipeline_jobs()
        unknown = [j for j in self.jobs if j not in order]
        if unknown or not self.jobs:
            raise MljobsError(f"unknown jobs {unknown}; valid: {', '.join(order)}")
        self.jobs = [j for j in order if j in self.jobs]  # always in pipeline order
        for job in self.jobs:
            missing = [f"--{n.replace('_', '-')}" for n in _step(job).needs if not getattr(self, n)]
            if missing:
                raise MljobsError(f"the {job} step needs {' and '.join(missing)}")
        for t in (self.table, self.images_table, self.frames_table, self.text_table):
            if t:
                parse_table_name(t)
        for kv in self.conf:
            if "=" not in kv:
                raise MljobsError(f"--conf expects KEY=VALUE, got {kv!r}")
        return self

    def results_dir(self) -> str:
        return self.results or s3_join(self.artifacts, "results")

    def model_dir(self) -> str:
        return s3_join(self.results_dir(), "models", self.study)

    def text_model_dir(self) -> str:
        """Where the train-text step writes its model and predict-text reads it."""
        return s3_join(self.results_dir(), "models", "text-" + "-".join(parse_table_name(self.text_table)))

    def detector_dir(self) -> str:
        """Where the train-detector step writes its model and the detect step reads it."""
        return s3_join(self.results_dir(), "models", "detector-" + "-".join(parse_table_name(self.frames_table)))

    def detections_table(self) -> str:
        """The detect step's output: <frames table>_detections (a --pred of detection-metrics)."""
        db, name = parse_table_name(self.frames_table)
        return f"{db}.{name}_detections"

    def predictions_table(self) -> str:
        """The predict step's output, which the bias step reads: <db of --table>.predictions."""
        return f"{parse_table_name(self.table)[0]}.predictions"

    def explain_dir(self) -> str:
        """Where explain writes analysis.json (its default under the results root); the bias step
        writes its sections into the same file, as Clarify merges both analyses."""
        return s3_join(self.results_dir(), "explain", self.study)

    def where_args(self) -> list[str]:
        return ["--where", self.where] if self.where else []

    def job_args(self, job: str) -> list[str]:
        return _step(job).args(self) + list(self.extra_args.get(job, []))

    def steps(self) -> list[dict]:
        """The ``Steps`` of ``add_job_flow_steps``, one spark-submit per job."""
        out = []
        for job in self.jobs:
            label = _step(job).label(self)
            out.append({
                "Name": f"mljobs {job} {label}"[:256],
                "ActionOnFailure": self.action_on_failure,
                "HadoopJarStep": {
                    "Jar": "command-runner.jar",
                    # Every job's models, plots and reports go under the results prefix, not into
                    # the YARN container's scratch directory.
                    "Args": submit_args(self.env, self.artifacts, job, self.job_args(job),
                                        [f"{RESULTS_CONF}={self.results_dir()}", *self.conf]),
                },
            })
        return out


def artefact_files(build_dir: Path, with_env: bool = True) -> list[tuple[Path, str]]:
    """(local file, key under the prefix) for everything a step reads from S3."""
    root = project_root()
    names = [PY_FILES_ZIP, CONF_ARCHIVE, WHEEL] + ([ENV_ARCHIVE] if with_env else [])
    missing = [n for n in names if not (build_dir / n).is_file()]
    if missing:
        raise MljobsError(f"missing in {build_dir}: {', '.join(missing)}; run ./spark-submit.sh package first")
    files = [(build_dir / n, n) for n in names]
    files += [(p, f"jobs/{p.name}") for p in sorted((root / "jobs").glob("*.py")) if not p.name.startswith("_")]
    conf = root / "conf"
    files += [(p, f"conf/{p.name}") for p in sorted(conf.iterdir()) if p.suffix in (".properties", ".yaml", ".json")]
    return files


def upload(artifacts: str, build_dir: Path, region: str | None, with_env: bool = True, log=print) -> list[dict]:
    bucket, prefix = parse_s3_uri(artifacts)
    s3 = _client("s3", region)
    done = []
    for path, key in artefact_files(build_dir, with_env):
        full_key = f"{prefix}/{key}" if prefix else key
        s3.upload_file(str(path), bucket, full_key)  # multipart for the large env archive
        size = path.stat().st_size
        log(f"[emr] uploaded s3://{bucket}/{full_key} ({size} bytes)")
        done.append({"key": full_key, "bytes": size})
    return done


def run_steps(cluster_id: str, steps: list[dict], region: str | None, poll_s: float, timeout_s: float | None,
              wait: bool = True, log=print) -> dict:
    """Add the steps, then poll until every one is in a terminal state (or the timeout)."""
    emr = _client("emr", region)
    ids = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=steps)["StepIds"]
    names = {sid: s["Name"] for sid, s in zip(ids, steps)}
    for sid in ids:
        log(f"[emr] added {sid}: {names[sid]}")
    states: dict[str, dict] = {}
    start = time.monotonic()
    status = "added"
    while wait:
        for sid in ids:
            st = emr.describe_step(ClusterId=cluster_id, StepId=sid)["Step"]["Status"]
            new = {"state": st["State"]}
            fail = st.get("FailureDetails") or {}
            if fail:
                new["failure"] = {k: fail[k] for k in ("Reason", "Message", "LogFile") if k in fail}
            if states.get(sid, {}).get("state") != new["state"]:
                log(f"[emr] {sid} {names[sid]}: {new['state']}" + (f" ({fail.get('Reason')})" if fail else ""))
            states[sid] = new
        if all(s["state"] in TERMINAL_STATES for s in states.values()):
            status = "ok" if all(s["state"] == "COMPLETED" for s in states.values()) else "failed"
            break
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            status = "timeout"
            break
        time.sleep(poll_s)
    return {
        "cluster_id": cluster_id, "status": status,
        "steps": [{"id": sid, "name": names[sid], **states.get(sid, {})} for sid in ids],
    }


def _parser() -> argparse.ArgumentParser:
    from mljobs.jobs_common import JobArgumentParser

    p = JobArgumentParser(prog="mljobs.emr", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, needs_artifacts=True):
        sp.add_argument("--artifacts", required=needs_artifacts, metavar="s3://BUCKET/PREFIX",
                        help="where `upload` put the artefacts")
        sp.add_argument("--region", help="AWS region (default: AWS_REGION / the profile's)")

    up = sub.add_parser("upload", help="upload the packaged artefacts, jobs/ and conf/ to the S3 prefix")
    common(up)
    up.add_argument("--build-dir", type=Path, default=project_root() / "build")
    up.add_argument("--no-env", action="store_true", help="skip the dependency archive (already uploaded)")

    lv = sub.add_parser("livy", help="print SparkMagic's %%%%configure cell for a Livy session on these artefacts")
    lv.add_argument("--artifacts", required=True, metavar="s3://BUCKET/PREFIX", help="where `upload` put the artefacts")
    lv.add_argument("--env", choices=["emr", "emr-gpu"], default="emr")
    lv.add_argument("--conf", action="append", default=[], metavar="K=V", help="extra Spark property")

    for name in ("steps", "run"):
        sp = sub.add_parser(name, help="print the step JSON" if name == "steps" else "add the steps to a cluster and wait")
        common(sp)
        if name == "run":
            sp.add_argument("--cluster-id", required=True, help="j-XXXXXXXX")
            sp.add_argument("--poll-seconds", type=float, default=30.0)
            sp.add_argument("--timeout", type=float, metavar="SECONDS", help="stop waiting after this (exit 124)")
            sp.add_argument("--no-wait", action="store_true", help="add the steps and return")
        sp.add_argument("--dry-run", action="store_true", help="print the step JSON; contact no AWS service")
        sp.add_argument("--env", choices=["emr", "emr-gpu"], default="emr")
        sp.add_argument("--jobs", default=",".join(default_jobs()), help=f"comma-separated subset of {','.join(pipeline_jobs())}")
        sp.add_argument("--action-on-failure", choices=ACTIONS_ON_FAILURE, default="CANCEL_AND_WAIT")
        sp.add_argument("--input", nargs="+", default=[], metavar="PATH", help="ingest input (s3://...)")
        sp.add_argument("--table", help="the flights table DB.NAME (ingest writes it, tune/explain read it)")
        sp.add_argument("--study", help="tuning study; its model goes to RESULTS/models/<study>")
        sp.add_argument("--where", help="SQL filter for tune and explain")
        sp.add_argument("--facet", default="Reporting_Airline",
                        help="bias: the sensitive column (predict keeps it in the predictions)")
        sp.add_argument("--label", default="ArrDel15", help="bias: the table's label column")
        sp.add_argument("--gt", help="detection ground truth (table or s3:// path)")
        sp.add_argument("--pred", help="detections (table or s3:// path)")
        sp.add_argument("--images-input", metavar="s3://...", help="ingest-images: the folders of labelled images")
        sp.add_argument("--images-table", help="ingest-images: the images table DB.NAME")
        sp.add_argument("--videos-input", metavar="s3://...", help="frames: the videos (a folder or a glob)")
        sp.add_argument("--frames-table", help="frames: the frames table DB.NAME (train-detector and detect read it)")
        sp.add_argument("--labels-input", metavar="s3://...|DB.NAME",
                        help="train-detector: the boxes (video, frame, left, width, top, height): CSV/Parquet, "
                        "or a table")
        sp.add_argument("--detector", metavar="MODEL", help="detect: opencv:NAME or a model directory (default: the "
                        "train-detector step's, RESULTS/models/detector-<db>-<name>)")
        sp.add_argument("--text-table", help="train-text / predict-text: the text table DB.NAME")
        sp.add_argument("--text-col", default="text", help="train-text / predict-text: its text column")
        sp.add_argument("--text-label-col", default="label", help="train-text: its label column")
        sp.add_argument("--results", metavar="s3://...", help="models and outputs (default ARTIFACTS/results)")
        sp.add_argument("--conf", action="append", default=[], metavar="K=V", help="extra Spark property, every step")
        for job in pipeline_jobs():
            sp.add_argument(f"--{job}-args", default="", metavar="'ARGS'", help=f"more {job} flags, shell-quoted")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "upload":
            parse_s3_uri(args.artifacts)
            files = upload(args.artifacts, args.build_dir, args.region, with_env=not args.no_env)
            print(json.dumps({"command": "upload", "status": "ok", "artifacts": args.artifacts, "files": files}))
            return 0
        if args.command == "livy":
            print(configure_cell(args.artifacts, args.env, args.conf), end="")
            return 0
        pipeline = Pipeline(
            artifacts=args.artifacts, env=args.env, jobs=[j.strip() for j in args.jobs.split(",") if j.strip()],
            input=args.input, table=args.table, study=args.study, where=args.where, gt=args.gt, pred=args.pred,
            facet=args.facet, label=args.label, images_input=args.images_input, images_table=args.images_table,
            videos_input=args.videos_input, frames_table=args.frames_table, labels_input=args.labels_input,
            detector=args.detector,
            text_table=args.text_table, text_col=args.text_col, text_label_col=args.text_label_col,
            results=args.results, action_on_failure=args.action_on_failure, conf=args.conf,
            extra_args={j: shlex.split(getattr(args, f"{j.replace('-', '_')}_args")) for j in pipeline_jobs()},
        ).validate()
        steps = pipeline.steps()
        if args.command == "steps" or args.dry_run:
            print(json.dumps(steps, indent=2))
            return 0
        report = run_steps(args.cluster_id, steps, args.region, args.poll_seconds, args.timeout,
                           wait=not args.no_wait)
    except MljobsError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    print(json.dumps({"command": "run", **report}))
    return {"ok": 0, "added": 0, "failed": 1, "timeout": 124}[report["status"]]


if __name__ == "__main__":
    sys.exit(main())
