"""Amazon SageMaker: package a tune model as ``model.tar.gz``, deploy it to an endpoint, run a
batch transform with it, delete what deploy created. boto3's ``sagemaker`` client, not the SDK.

    python -m mljobs.sagemaker package   --model DIR|s3://... --out model.tar.gz
    python -m mljobs.sagemaker deploy    --model DIR|model.tar.gz|s3://... --s3-prefix s3://BUCKET/PREFIX \\
                                         --role-arn ARN --name NAME [--image-uri URI | --xgboost-version V] [--dry-run]
    python -m mljobs.sagemaker transform --model-name NAME --input s3://... --output s3://... [--wait]
    python -m mljobs.sagemaker delete    --name NAME

The archive holds the booster at its root as ``xgboost-model`` (what SageMaker's built-in
XGBoost container loads) and our ``metadata.json`` pointing at it, so the extracted directory
is also an mljobs model directory (``load_artifact``, ``mljobs.serve``). AWS access goes through
boto3's default credential chain (mljobs.aws): no keys are taken, stored or printed.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import sys
import tarfile
import time
from pathlib import Path

from mljobs.errors import InputError, MljobsError
from mljobs.uris import parse_s3_uri

BOOSTER_FILE = "xgboost-model"
ARCHIVE_MEMBERS = ("metadata.json", BOOSTER_FILE)  # sorted, the order they are written in
# SageMaker's rule for model, endpoint, endpoint config and transform job names.
NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}$")
INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
XGBOOST_VERSIONS = ("1.5-1", "1.7-1", "2.1-0")
DEFAULT_XGBOOST = "1.7-1"
# The account of the built-in sagemaker-xgboost inference image in each region, the same for
# the versions above: the SageMaker Python SDK's src/sagemaker/image_uri_config/xgboost.json
# (aws/sagemaker-python-sdk), which matches the "Docker Registry Paths" pages of the SageMaker
# developer guide. The isolated (us-iso*) regions are left out: their registries use other domains.
XGBOOST_ACCOUNTS = {
    "af-south-1": "510948584623", "ap-east-1": "651117190479", "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698", "ap-northeast-3": "867004704886", "ap-south-1": "720646828776",
    "ap-south-2": "628508329040", "ap-southeast-1": "121021644041", "ap-southeast-2": "783357654285",
    "ap-southeast-3": "951798379941", "ap-southeast-4": "106583098589", "ca-central-1": "341280168497",
    "ca-west-1": "190319476487", "cn-north-1": "450853457545", "cn-northwest-1": "451049120500",
    "eu-central-1": "492215442770", "eu-central-2": "680994064768", "eu-north-1": "662702820516",
    "eu-south-1": "978288397137", "eu-south-2": "104374241257", "eu-west-1": "141502667606",
    "eu-west-2": "764974769150", "eu-west-3": "659782779980", "il-central-1": "898809789911",
    "me-central-1": "272398656194", "me-south-1": "801668240914", "sa-east-1": "737474898029",
    "us-east-1": "683313688378", "us-east-2": "257758044811", "us-gov-east-1": "237065988967",
    "us-gov-west-1": "414596584902", "us-west-1": "746614075791", "us-west-2": "246618743249",
}
ENDPOINT_DONE, ENDPOINT_FAILED = ("InService",), ("Failed", "OutOfService")
TRANSFORM_DONE, TRANSFORM_FAILED = ("Completed",), ("Failed", "Stopped")


def log(message: str) -> None:
    print(f"[sagemaker] {message}", flush=True)


# ---------------------------------------------------------------------------------------------
# Checks (all before any AWS call)

def check_name(name: str, flag: str) -> str:
    if not NAME.match(name or ""):
        raise MljobsError(f"{flag} {name!r}: SageMaker names are 1-63 letters, digits and inner hyphens "
                          "(^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$)")
    return name


def check_role_arn(arn: str) -> str:
    if not ROLE_ARN.match(arn or ""):
        raise MljobsError(f"--role-arn {arn!r}: expected arn:aws:iam::ACCOUNT_ID:role/NAME "
                          "(an IAM role SageMaker can assume)")
    return arn


def check_instances(instance_type: str, count: int) -> None:
    if not INSTANCE_TYPE.match(instance_type or ""):
        raise MljobsError(f"--instance-type {instance_type!r}: expected a SageMaker instance type like ml.m5.large")
    if count < 1:
        raise MljobsError(f"--instance-count must be at least 1, got {count}")


def builtin_image(region: str | None, version: str = DEFAULT_XGBOOST) -> str:
    """The ECR URI of SageMaker's built-in XGBoost image for the region."""
    if not region:
        raise MljobsError("no AWS region: pass --region or set AWS_REGION (it picks the built-in image)")
    account = XGBOOST_ACCOUNTS.get(region)
    if account is None:
        raise MljobsError(f"no built-in XGBoost image is known for region {region}: pass --image-uri "
                          "(the built-in image's URI there, or your own image running mljobs.serve)")
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/sagemaker-xgboost:{version}"


# ---------------------------------------------------------------------------------------------
# The archive

def archive_bytes(model_dir: str | Path) -> tuple[bytes, dict]:
    """(model.tar.gz bytes, its metadata) for a local model directory: the booster as
    ``xgboost-model`` plus metadata.json naming it; the same model gives the same bytes."""
    from mljobs.models.artifact import METADATA_FILE, load_artifact

    art = load_artifact(model_dir)
    meta = json.loads((Path(art.path) / METADATA_FILE).read_text())
    meta["model_file"] = BOOSTER_FILE
    files = {METADATA_FILE: (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode(),
             BOOSTER_FILE: art.model_bytes()}
    return _tar_gz(files), meta


def _tar_gz(files: dict[str, bytes]) -> bytes:
    """A gzipped tar of the files, sorted by name, with fixed times, owners and modes."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name in sorted(files):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(files[name]), 0, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


def read_archive(data: bytes, where: str) -> dict:
    """The metadata of a model.tar.gz made by ``package``; InputError when it is not one or
    when its xgboost-model is not the booster its metadata describes."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            files = {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        meta = json.loads(files["metadata.json"])
    except (tarfile.TarError, OSError, KeyError, ValueError) as exc:
        raise InputError(f"{where}: not a model.tar.gz made by `mljobs.sagemaker package` ({exc})") from None
    booster = files.get(meta.get("model_file", ""))
    if meta.get("model_file") != BOOSTER_FILE or booster is None:
        raise InputError(f"{where}: the archive lacks {BOOSTER_FILE} named by its metadata.json")
    if meta.get("model_sha256") and hashlib.sha256(booster).hexdigest() != meta["model_sha256"]:
        raise InputError(f"{where}: {BOOSTER_FILE} is not the model metadata.json describes (sha256 differs)")
    return meta


def model_warnings(meta: dict, builtin: bool = True) -> list[str]:
    """What a user of the built-in XGBoost image must know about this model."""
    out = []
    strings = sorted(meta.get("categorical_maps") or {})
    if strings and builtin:
        out.append(f"string features {', '.join(strings)}: SageMaker's built-in XGBoost container takes numbers "
                   "only, so send them encoded (a value's position in metadata.json's categorical_maps; unseen = "
                   "empty); an image running mljobs.serve takes the raw strings")
    trained = str((meta.get("versions") or {}).get("xgboost", ""))
    if builtin and tuple(int(p) for p in re.findall(r"\d+", trained)[:2]) >= (3, 1):
        out.append(f"saved by xgboost {trained}, newer than the built-in images' XGBoost (<= 2.1): whether they "
                   "read it is not checked here (no SageMaker runtime); if the endpoint cannot load it, deploy "
                   "an image running mljobs.serve with --image-uri")
    return out


def fetch_model_dir(uri: str, region: str | None) -> Path:
    """Copy an s3:// model directory (metadata.json and its model file) to a local temp dir."""
    from mljobs.aws import aws_calls, client
    from mljobs.fs import temp_dir
    from mljobs.models.artifact import METADATA_FILE

    bucket, prefix = parse_s3_uri(uri)
    local = temp_dir("mljobs-sagemaker-")
    s3 = client("s3", region, extra="sagemaker")
    with aws_calls():
        meta = s3.get_object(Bucket=bucket, Key=f"{prefix}/{METADATA_FILE}".lstrip("/"))["Body"].read()
        (local / METADATA_FILE).write_bytes(meta)
        name = json.loads(meta).get("model_file", "model.json")
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}/{name}".lstrip("/"))["Body"].read()
    (local / Path(name).name).write_bytes(body)
    return local


def package(model: str, out: Path, region: str | None = None) -> dict:
    """Write model.tar.gz for a model directory (local or s3://); a summary of what was written."""
    source = fetch_model_dir(model, region) if model.startswith("s3://") else Path(model)
    data, meta = archive_bytes(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return {"out": str(out), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "model_sha256": meta.get("model_sha256"), "study": meta.get("study"),
            "features": meta.get("features"), "warnings": model_warnings(meta)}


# ---------------------------------------------------------------------------------------------
# Request payloads

def model_request(name: str, image: str, data_url: str, role_arn: str, environment: dict) -> dict:
    return {"ModelName": name, "ExecutionRoleArn": role_arn,
            "PrimaryContainer": {"Image": image, "ModelDataUrl": data_url, "Environment": environment}}


def endpoint_config_request(name: str, instance_type: str, count: int) -> dict:
    return {"EndpointConfigName": name, "ProductionVariants": [{
        "VariantName": "AllTraffic", "ModelName": name, "InstanceType": instance_type,
        "InitialInstanceCount": count, "InitialVariantWeight": 1.0}]}


def endpoint_request(name: str) -> dict:
    return {"EndpointName": name, "EndpointConfigName": name}


def transform_request(job: str, model_name: str, input_uri: str, output_uri: str, instance_type: str,
                      count: int) -> dict:
    """A batch transform over every CSV object under the input prefix, one record per line."""
    return {
        "TransformJobName": job, "ModelName": model_name,
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
                           "ContentType": "text/csv", "SplitType": "Line"},
        "TransformOutput": {"S3OutputPath": output_uri, "Accept": "text/csv", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": count},
    }


# ---------------------------------------------------------------------------------------------
# deploy

def prepare_model(model: str, s3_prefix: str, name: str, dry_run: bool, region: str | None) -> dict:
    """Where the model data comes from: {'data_url', 'meta', 'upload': (bucket, key, bytes) | None}."""
    if model.startswith("s3://") and model.endswith(".tar.gz"):
        parse_s3_uri(model)
        return {"data_url": model, "meta": {}, "upload": None}  # already packaged and uploaded
    if model.startswith("s3://"):
        if dry_run:
            raise MljobsError("--dry-run with an s3:// model directory would need a download: "
                              "package it first (package --model s3://... --out model.tar.gz)")
        data, meta = archive_bytes(fetch_model_dir(model, region))
    elif Path(model).is_file():
        data = Path(model).read_bytes()
        meta = read_archive(data, model)
    else:
        data, meta = archive_bytes(model)
    bucket, prefix = parse_s3_uri(s3_prefix)
    digest = hashlib.sha256(data).hexdigest()
    key = "/".join(p for p in (prefix, name, digest[:16], "model.tar.gz") if p)
    return {"data_url": f"s3://{bucket}/{key}", "meta": meta, "upload": (bucket, key, data)}


def deploy_requests(args, region: str | None, prepared: dict) -> dict:
    image = args.image_uri or builtin_image(region, args.xgboost_version)
    env = {"MLJOBS_MODEL_SHA256": prepared["meta"]["model_sha256"]} if prepared["meta"].get("model_sha256") else {}
    return {
        "CreateModel": model_request(args.name, image, prepared["data_url"], args.role_arn, env),
        "CreateEndpointConfig": endpoint_config_request(args.name, args.instance_type, args.instance_count),
        "CreateEndpoint": endpoint_request(args.name),
    }


def wait_for(describe, status_key: str, done: tuple, failed: tuple, poll_s: float, timeout_s: float | None,
             label: str) -> tuple[str, dict]:
    """Poll ``describe()`` until its status is done or failed (or the timeout): ('ok' |
    'failed' | 'timeout', the last description)."""
    start, last = time.monotonic(), None
    while True:
        desc = describe()
        status = desc.get(status_key)
        if status != last:
            reason = desc.get("FailureReason")
            log(f"{label}: {status}" + (f" ({reason})" if reason else ""))
            last = status
        if status in done or status in failed:
            return ("ok" if status in done else "failed"), desc
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            return "timeout", desc
        time.sleep(poll_s)


def deploy(args, region: str | None) -> dict:
    """Upload the archive, create the model, the endpoint config and the endpoint; wait if asked."""
    from mljobs.aws import aws_calls, client

    prepared = prepare_model(args.model, args.s3_prefix, args.name, args.dry_run, region)
    requests = deploy_requests(args, region, prepared)
    builtin = not args.image_uri
    summary = {"command": "deploy", "name": args.name, "region": region,
               "image": requests["CreateModel"]["PrimaryContainer"]["Image"],
               "model_data_url": prepared["data_url"], "warnings": model_warnings(prepared["meta"], builtin)}
    for w in summary["warnings"]:
        log(f"warning: {w}")
    if args.dry_run:
        upload = prepared["upload"]
        print(json.dumps({**requests, "PutObject": upload and {"Bucket": upload[0], "Key": upload[1],
                                                              "ContentLength": len(upload[2])}}, indent=2))
        return {**summary, "status": "dry-run"}
    sm = client("sagemaker", region, extra="sagemaker")
    with aws_calls():
        if prepared["upload"]:
            bucket, key, data = prepared["upload"]
            client("s3", region, extra="sagemaker").put_object(Bucket=bucket, Key=key, Body=data)
            log(f"uploaded {prepared['data_url']} ({len(data)} bytes)")
        summary["model_arn"] = sm.create_model(**requests["CreateModel"])["ModelArn"]
        log(f"created model {args.name}: {summary['image']}")
        summary["endpoint_config_arn"] = sm.create_endpoint_config(**requests["CreateEndpointConfig"])["EndpointConfigArn"]
        log(f"created endpoint config {args.name}: {args.instance_count} x {args.instance_type}")
        summary["endpoint_arn"] = sm.create_endpoint(**requests["CreateEndpoint"])["EndpointArn"]
        log(f"created endpoint {args.name}")
        summary["status"] = "created"
        if args.wait:
            summary["status"], desc = wait_for(lambda: sm.describe_endpoint(EndpointName=args.name), "EndpointStatus",
                                               ENDPOINT_DONE, ENDPOINT_FAILED, args.poll_seconds, args.timeout,
                                               f"endpoint {args.name}")
            summary["endpoint_status"] = desc.get("EndpointStatus")
    return summary


# ---------------------------------------------------------------------------------------------
# transform, delete

def transform(args, region: str | None) -> dict:
    from mljobs.aws import aws_calls, client

    job = args.job_name or f"{args.model_name[:47].rstrip('-')}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    check_name(job, "--job-name")
    request = transform_request(job, args.model_name, args.input, args.output, args.instance_type,
                                args.instance_count)
    summary = {"command": "transform", "job_name": job, "model_name": args.model_name, "output": args.output}
    if args.dry_run:
        print(json.dumps({"CreateTransformJob": request}, indent=2))
        return {**summary, "status": "dry-run"}
    sm = client("sagemaker", region, extra="sagemaker")
    with aws_calls():
        summary["transform_job_arn"] = sm.create_transform_job(**request)["TransformJobArn"]
        log(f"created transform job {job}: {args.input} -> {args.output}")
        summary["status"] = "created"
        if args.wait:
            summary["status"], desc = wait_for(lambda: sm.describe_transform_job(TransformJobName=job),
                                               "TransformJobStatus", TRANSFORM_DONE, TRANSFORM_FAILED,
                                               args.poll_seconds, args.timeout, f"transform job {job}")
            summary["transform_job_status"] = desc.get("TransformJobStatus")
    return summary


def _missing(exc) -> bool:
    """A ClientError saying the resource does not exist (SageMaker's ValidationException)."""
    err = exc.response.get("Error", {})
    return err.get("Code") == "ValidationException" and "could not find" in err.get("Message", "").lower()


def delete(name: str, region: str | None) -> dict:
    """Delete the endpoint, the endpoint config and the model called ``name``; missing ones are reported."""
    from botocore.exceptions import ClientError

    from mljobs.aws import aws_calls, client

    sm = client("sagemaker", region, extra="sagemaker")
    result = {}
    with aws_calls():
        for what, call, key in (("endpoint", sm.delete_endpoint, "EndpointName"),
                                ("endpoint_config", sm.delete_endpoint_config, "EndpointConfigName"),
                                ("model", sm.delete_model, "ModelName")):
            try:
                call(**{key: name})
                result[what] = "deleted"
            except ClientError as exc:
                if not _missing(exc):
                    raise
                result[what] = "missing"
            log(f"{what.replace('_', ' ')} {name}: {result[what]}")
    return {"command": "delete", "name": name, "status": "ok", **result}


# ---------------------------------------------------------------------------------------------
# Command line

def _parser() -> argparse.ArgumentParser:
    from mljobs.jobs_common import JobArgumentParser

    p = JobArgumentParser(prog="mljobs.sagemaker", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("package", help="write model.tar.gz for SageMaker from a model directory")
    pk.add_argument("--model", required=True, metavar="DIR|s3://...", help="a tune model directory")
    pk.add_argument("--out", required=True, type=Path, metavar="FILE.tar.gz")
    pk.add_argument("--region", help="AWS region, for an s3:// model (default: AWS_REGION / the profile's)")

    dp = sub.add_parser("deploy", help="upload the model, create the model, endpoint config and endpoint")
    dp.add_argument("--model", required=True, metavar="DIR|model.tar.gz|s3://...",
                    help="a model directory, a package output, or either on S3 (an s3://...tar.gz is used as is)")
    dp.add_argument("--s3-prefix", required=True, metavar="s3://BUCKET/PREFIX", help="where model.tar.gz goes")
    dp.add_argument("--role-arn", required=True, help="the IAM role SageMaker assumes (reads the model from S3)")
    dp.add_argument("--name", required=True, help="the model, endpoint config and endpoint name")
    img = dp.add_mutually_exclusive_group()
    img.add_argument("--image-uri", help="an inference image, e.g. yours running mljobs.serve")
    img.add_argument("--xgboost-version", choices=XGBOOST_VERSIONS, default=DEFAULT_XGBOOST,
                     help=f"the built-in sagemaker-xgboost image tag (default {DEFAULT_XGBOOST})")
    _resources(dp, wait_default=True)

    tf = sub.add_parser("transform", help="a batch transform job over an S3 prefix of CSV files")
    tf.add_argument("--model-name", required=True, help="a SageMaker model (deploy --name)")
    tf.add_argument("--input", required=True, metavar="s3://BUCKET/PREFIX", help="CSV: features only, model order")
    tf.add_argument("--output", required=True, metavar="s3://BUCKET/PREFIX")
    tf.add_argument("--job-name", help="default: MODEL-NAME-YYYYMMDD-HHMMSS")
    _resources(tf, wait_default=False)

    dl = sub.add_parser("delete", help="delete the endpoint, endpoint config and model of a deploy")
    dl.add_argument("--name", required=True)
    dl.add_argument("--region", help="AWS region (default: AWS_REGION / the profile's)")
    return p


def _resources(sp, wait_default: bool) -> None:
    sp.add_argument("--instance-type", default="ml.m5.large")
    sp.add_argument("--instance-count", type=int, default=1)
    sp.add_argument("--region", help="AWS region (default: AWS_REGION / the profile's)")
    sp.add_argument("--wait", action=argparse.BooleanOptionalAction, default=wait_default,
                    help="wait until " + ("the endpoint is in service" if wait_default else "the job ends"))
    sp.add_argument("--poll-seconds", type=float, default=30.0)
    sp.add_argument("--timeout", type=float, metavar="SECONDS", help="stop waiting after this (exit 124)")
    sp.add_argument("--dry-run", action="store_true", help="print the request payloads; contact no AWS service")


def validate(args) -> None:
    """Every argument check, before any AWS call."""
    if args.command == "deploy":
        check_name(args.name, "--name")
        check_role_arn(args.role_arn)
        parse_s3_uri(args.s3_prefix)
        check_instances(args.instance_type, args.instance_count)
    elif args.command == "transform":
        check_name(args.model_name, "--model-name")
        if args.job_name:
            check_name(args.job_name, "--job-name")
        parse_s3_uri(args.input)
        parse_s3_uri(args.output)
        check_instances(args.instance_type, args.instance_count)
    elif args.command == "delete":
        check_name(args.name, "--name")


def run(args) -> dict:
    from mljobs.aws import default_region

    validate(args)
    region = default_region(args.region)
    if args.command == "package":
        summary = {"command": "package", "status": "ok", **package(args.model, args.out, region)}
        for w in summary["warnings"]:
            log(f"warning: {w}")
        log(f"wrote {args.out} ({summary['bytes']} bytes, sha256 {summary['sha256']})")
        return summary
    if args.command == "deploy":
        if not args.image_uri:
            builtin_image(region, args.xgboost_version)  # an unknown region fails before the packaging
        return deploy(args, region)
    if args.command == "transform":
        return transform(args, region)
    return delete(args.name, region)


def main(argv=None) -> int:
    from mljobs.summary import emit_summary

    args = _parser().parse_args(argv)
    try:
        summary = run(args)
    except MljobsError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    emit_summary(summary)
    return {"failed": 1, "timeout": 124}.get(summary["status"], 0)


if __name__ == "__main__":
    sys.exit(main())
