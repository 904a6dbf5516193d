"""S3 access with boto3: AWS in production, the moto server locally (AWS_ENDPOINT_URL)."""

from __future__ import annotations

from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions

from berlin_rentals.config import AwsSettings
from berlin_rentals.errors import ObjectChanged, ObjectGone
from berlin_rentals.source import InvalidSource, SourceObject, normalize_etag, validate_key, validate_version_id


def _boto_config(attempts: int) -> botocore.config.Config:
    # Standard retries, AWS_MAX_ATTEMPTS per call in all (settings.aws_max_attempts, 4 unless set): the
    # fault tests set 1 so that the task's retries are the only ones.
    return botocore.config.Config(
        retries={"mode": "standard", "total_max_attempts": attempts}, connect_timeout=5, read_timeout=60
    )


def s3_client(settings: AwsSettings):
    config = _boto_config(settings.aws_max_attempts)
    return boto3.client("s3", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region, config=config)


def sqs_client(settings: AwsSettings):
    config = _boto_config(settings.aws_max_attempts)
    return boto3.client("sqs", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region, config=config)


def _missing(exc: botocore.exceptions.ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket", "NoSuchVersion")


def require_raw_bucket(bucket: str, raw_bucket: str) -> str:
    """A bucket named by an event or a caller is untrusted: only the raw bucket is ever read, whatever
    else this process's credentials could reach."""
    if bucket != raw_bucket:
        raise InvalidSource(f"bucket {bucket!r} is not the raw bucket {raw_bucket!r}: refused")
    return bucket


def _version(version_id: str | None) -> dict[str, str]:
    return {"VersionId": version_id} if version_id else {}


def head_source(
    s3,
    bucket: str,
    key: str,
    expected_etag: str | None,
    *,
    raw_bucket: str,
    prefix: str = "",
    version_id: str | None = None,
) -> SourceObject:
    """Confirm the object exists and is the version we were told about (event payloads are untrusted).

    With `version_id` (the event's, in a versioned bucket) that exact version is confirmed even if a newer
    one has replaced it since: the event is for it, and the load decides which of a key's versions wins."""
    require_raw_bucket(bucket, raw_bucket)
    validate_key(key, prefix)
    expected = normalize_etag(expected_etag)
    validate_version_id(version_id)
    stood_in_for = None
    try:
        head = s3.head_object(Bucket=bucket, Key=key, **_version(version_id))
    except botocore.exceptions.ClientError as exc:
        if not _missing(exc):
            raise
        head = _same_bytes_as_gone_version(s3, bucket, key, expected, version_id)
        if head is None:
            what = f"version {version_id} of " if version_id else ""
            raise ObjectGone(f"{what}s3://{bucket}/{key} does not exist (deleted after its event?)") from exc
        stood_in_for = version_id
    etag = normalize_etag(head["ETag"])
    if expected and etag != expected:
        if version_id:
            raise InvalidSource(f"version {version_id} of s3://{bucket}/{key} has ETag {etag}, not {expected}")
        raise ObjectChanged(f"s3://{bucket}/{key} now has ETag {etag}, not {expected}: a newer version replaced it")
    return SourceObject(
        bucket=bucket,
        key=key,
        etag=etag,
        size=int(head["ContentLength"]),
        last_modified=head["LastModified"],
        version_id=head.get("VersionId"),
        stood_in_for=stood_in_for,
    )


def _same_bytes_as_gone_version(s3, bucket: str, key: str, etag: str | None, version_id: str | None) -> dict | None:
    """The key's current version's HEAD when it has the ETag of the named version that is gone: the same
    bytes, as after a restore of the local stack, which keeps no version ids. None when nothing can stand in."""
    if not (version_id and etag):
        return None
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as exc:
        if _missing(exc):
            return None
        raise
    return head if normalize_etag(head["ETag"]) == etag else None


def download_source(s3, source: SourceObject, destination: Path) -> Path:
    """Stream the exact version to disk: by its version id when the HEAD gave one, so an overwrite between
    the event and the read changes nothing; IfMatch makes S3 refuse any other bytes all the same."""
    return download_version(s3, source.bucket, source.key, source.etag, source.version_id, destination)


def download_version(s3, bucket: str, key: str, etag: str, version_id: str | None, destination: Path) -> Path:
    """Stream one object version (the key's current one without `version_id`) with this ETag to disk."""
    uri = f"s3://{bucket}/{key}"
    try:
        response = s3.get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"', **_version(version_id))
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if _missing(exc):
            what = f"version {version_id} of " if version_id else ""
            raise ObjectGone(f"{what}{uri} disappeared before it could be read") from exc
        if code in ("PreconditionFailed", "412"):
            raise ObjectChanged(f"{uri} changed (ETag is no longer {etag})") from exc
        raise
    with destination.open("wb") as out:
        for chunk in response["Body"].iter_chunks(chunk_size=1 << 20):
            out.write(chunk)
    return destination
