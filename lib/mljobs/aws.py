"""boto3 clients and AWS errors, for the modules that call AWS (mljobs.emr, mljobs.sagemaker).

Clients come from boto3's default credential chain (instance profile or IAM role, a named
profile, SSO, environment): nothing here takes, stores or prints keys. ``AWS_ENDPOINT_URL``
points boto3 at another endpoint (tests use a local emulator).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from mljobs.errors import MljobsError, error_text


class AwsError(MljobsError):
    """An AWS call failed (the service's own message, one line)."""

    exit_code = 3


def client(service: str, region: str | None, extra: str = "emr"):
    """A boto3 client; a clear MljobsError when boto3 is missing or no region is known."""
    try:
        import boto3
    except ImportError:
        raise MljobsError(f"boto3 is missing: pip install 'mljobs[{extra}]' (or ./scripts/bootstrap.sh --test)") from None
    from botocore.exceptions import NoRegionError

    try:
        return boto3.client(service, region_name=region)
    except NoRegionError:
        raise MljobsError("no AWS region: pass --region or set AWS_REGION") from None


def default_region(region: str | None) -> str | None:
    """The region a client would use (flag, AWS_REGION / AWS_DEFAULT_REGION, the profile's),
    found without any call to AWS."""
    region = region or os.environ.get("AWS_REGION")  # not read by every botocore release
    if region:
        return region
    try:
        import boto3
    except ImportError:
        return os.environ.get("AWS_DEFAULT_REGION")
    return boto3.session.Session().region_name


@contextmanager
def aws_calls() -> Iterator[None]:
    """Turn botocore's errors (a ClientError from the service, a connection or credential
    error) into one-line AwsErrors, exit code 3."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise AwsError(error_text(exc)) from None
