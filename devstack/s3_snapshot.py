"""Keep the local stack's S3 (and what waits on its queues) across `make down` / `make up`.

moto's server keeps everything in memory and has no way to persist it (its recorder logs requests for
a replay, SQS receives and deletes included, which is not a state). So `make down` saves a snapshot to
`<root>/s3/` before it stops moto, and `make up` puts it back into the fresh moto server:

    s3/manifest.json        every bucket and object: key, ETag, size, content type and headers,
                            user metadata, the part sizes of a multipart object, the sha256 of its body;
                            the messages that waited on the stack's queues
    s3/objects/<sha256>     the bodies, stored once per content

An object gets the ETag it had: a single-part ETag is the MD5 of the bytes, so the same put gives the
same ETag; a multipart ETag (MD5 of the parts' MD5s, "-N") is rebuilt by uploading the same parts
(their sizes come from HEAD with PartNumber). A restored ETag that differs anyway is reported.
LastModified is the restore's time (S3 sets it; the original is in the manifest), version ids are not
kept (a restored object's HEAD shows none: its listing says 'null'), and only the current version of an
object is kept.

Objects are restored before the raw bucket's notification is configured, so a restore announces
nothing on the queue: the bridge starts no ingest run for an object the ledger already knows. The
queue's own messages (notifications not forwarded when the stack stopped, DLQ entries with their
reason) are sent again after the queues exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT = 1
THREADS = 8
# Object headers a restore puts back (boto3's names), besides the user metadata.
KEPT_HEADERS = ("ContentType", "ContentEncoding", "ContentDisposition", "ContentLanguage", "CacheControl")
CHUNK = 1024 * 1024
SHOWN = 5  # examples in a warning


def _clients(endpoint_url: str, region: str):
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=THREADS * 2)
    # moto accepts any key: never sign requests to it with real credentials someone exported.
    common = dict(
        endpoint_url=endpoint_url,
        region_name=region,
        config=config,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token=None,
    )
    return boto3.client("s3", **common), boto3.client("sqs", **common)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _plain_etag(etag: str) -> str:
    return etag.strip('"')


def multipart_etag(part_md5s: Iterable[bytes]) -> str:
    digests = list(part_md5s)
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except FileNotFoundError:
        return None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder / 'manifest.json'} has format {manifest.get('format')!r}, not {FORMAT}")
    return manifest


@dataclass
class Report:
    buckets: int = 0
    objects: int = 0
    bytes: int = 0
    messages: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


# ---- snapshot --------------------------------------------------------------------------------


def _save_object(s3, bucket: str, key: str, objects_dir: Path) -> tuple[dict[str, Any], str | None]:
    """Download one object to objects/<sha256>; its manifest entry, and a warning if its ETag will not survive."""
    response = s3.get_object(Bucket=bucket, Key=key)
    etag = _plain_etag(response["ETag"])
    md5, sha = hashlib.md5(), hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=objects_dir, prefix=".partial-", delete=False) as out:
        for chunk in response["Body"].iter_chunks(CHUNK):
            md5.update(chunk)
            sha.update(chunk)
            out.write(chunk)
    body = objects_dir / sha.hexdigest()
    if body.exists():
        os.unlink(out.name)
    else:
        os.replace(out.name, body)
    entry: dict[str, Any] = {
        "key": key,
        "etag": etag,
        "size": response["ContentLength"],
        "sha256": sha.hexdigest(),
        "last_modified": response["LastModified"].isoformat(),
        "metadata": response.get("Metadata", {}),
        "headers": {name: response[name] for name in KEPT_HEADERS if response.get(name)},
        "parts": None,
    }
    warning = None
    if "-" in etag:
        # Multipart: the part sizes rebuild the same ETag; HEAD with PartNumber tells each one's size.
        first = s3.head_object(Bucket=bucket, Key=key, PartNumber=1)
        count = int(first.get("PartsCount") or 1)
        sizes = [first["ContentLength"]] + [
            s3.head_object(Bucket=bucket, Key=key, PartNumber=n)["ContentLength"] for n in range(2, count + 1)
        ]
        entry["parts"] = sizes
        digests = []
        with body.open("rb") as source:
            for size in sizes:
                digests.append(hashlib.md5(source.read(size)).digest())
        if multipart_etag(digests) != etag:
            warning = f"s3://{bucket}/{key}: multipart ETag {etag} is not the MD5 of its {count} parts; a restore gives a new one"
    elif md5.hexdigest() != etag:
        warning = (
            f"s3://{bucket}/{key}: ETag {etag} is not the MD5 of its bytes (encrypted?); a restore gives a new one"
        )
    return entry, warning


def _drain_queue(sqs, name: str) -> tuple[list[dict[str, Any]], int]:
    """The visible messages of a queue (received, so hidden until moto stops), and how many were in flight."""
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        return [], 0
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    in_flight = int(attributes["Attributes"].get("ApproximateNumberOfMessagesNotVisible", 0))
    saved: list[dict[str, Any]] = []
    while True:
        received = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=3600,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            return saved, in_flight
        for message in received:
            saved.append({"body": message["Body"], "message_attributes": message.get("MessageAttributes", {})})


def take_snapshot(
    endpoint_url: str, region: str, folder: Path, queues: Iterable[str] = (), source: dict[str, Any] | None = None
) -> Report:
    """Save every bucket of the moto server at endpoint_url, and the messages on `queues`, to folder.

    The manifest is replaced atomically once every body is on disk, so an interrupted snapshot leaves
    the previous one whole; bodies no manifest names any more are removed after."""
    started = time.monotonic()
    s3, sqs = _clients(endpoint_url, region)
    objects_dir = folder / "objects"
    objects_dir.mkdir(parents=True, exist_ok=True)
    report = Report()
    buckets = []
    with ThreadPoolExecutor(THREADS) as pool:
        for bucket in s3.list_buckets().get("Buckets", []):
            name = bucket["Name"]
            location = s3.get_bucket_location(Bucket=name).get("LocationConstraint") or "us-east-1"
            keys = [
                item["Key"]
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name)
                for item in page.get("Contents", [])
            ]
            saved = list(pool.map(lambda key, name=name: _save_object(s3, name, key, objects_dir), keys))
            entries = [entry for entry, _ in saved]
            report.warnings += [warning for _, warning in saved if warning]
            report.buckets += 1
            report.objects += len(entries)
            report.bytes += sum(entry["size"] for entry in entries)
            buckets.append({"name": name, "region": location, "objects": entries})
    messages = {}
    for name in queues:
        saved_messages, in_flight = _drain_queue(sqs, name)
        messages[name] = saved_messages
        report.messages += len(saved_messages)
        if in_flight:
            report.warnings.append(
                f"queue {name}: {in_flight} message(s) in flight (received, not deleted) are not "
                "kept; an object they announced is still found by the catch-up"
            )
    manifest = {
        "format": FORMAT,
        "taken_at": _now(),
        "endpoint": endpoint_url,
        "source": source or {},
        "buckets": buckets,
        "queues": messages,
        "warnings": report.warnings,
    }
    partial = folder / "manifest.json.partial"
    partial.write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    partial.replace(folder / "manifest.json")
    kept = {entry["sha256"] for bucket in buckets for entry in bucket["objects"]}
    for body in objects_dir.iterdir():
        if body.name not in kept:
            body.unlink(missing_ok=True)
    report.seconds = time.monotonic() - started
    return report


# ---- restore ---------------------------------------------------------------------------------


def _restore_object(s3, bucket: str, entry: dict[str, Any], objects_dir: Path) -> str | None:
    """Put one object back; a warning if its ETag is not the one it had."""
    body = objects_dir / entry["sha256"]
    extra = dict(entry["headers"], Metadata=entry["metadata"])
    if entry["parts"]:
        upload = s3.create_multipart_upload(Bucket=bucket, Key=entry["key"], **extra)["UploadId"]
        parts = []
        with body.open("rb") as source:
            for number, size in enumerate(entry["parts"], start=1):
                part = s3.upload_part(
                    Bucket=bucket, Key=entry["key"], UploadId=upload, PartNumber=number, Body=source.read(size)
                )
                parts.append({"PartNumber": number, "ETag": part["ETag"]})
        etag = s3.complete_multipart_upload(
            Bucket=bucket, Key=entry["key"], UploadId=upload, MultipartUpload={"Parts": parts}
        )["ETag"]
    else:
        with body.open("rb") as source:
            etag = s3.put_object(Bucket=bucket, Key=entry["key"], Body=source, **extra)["ETag"]
    if _plain_etag(etag) != entry["etag"]:
        return f"s3://{bucket}/{entry['key']}: restored with ETag {_plain_etag(etag)}, it had {entry['etag']}"
    return None


def restore_objects(endpoint_url: str, region: str, folder: Path, manifest: dict[str, Any]) -> Report:
    """Create the manifest's buckets in a fresh moto server and put every object back (no notification
    is configured yet, so nothing is announced)."""
    started = time.monotonic()
    s3, _ = _clients(endpoint_url, region)
    existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
    objects_dir = folder / "objects"
    report = Report()
    with ThreadPoolExecutor(THREADS) as pool:
        for bucket in manifest["buckets"]:
            name, location = bucket["name"], bucket["region"]
            if name not in existing:
                config = (
                    {} if location == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": location}}
                )
                s3.create_bucket(Bucket=name, **config)
            warnings = pool.map(
                lambda entry, name=name: _restore_object(s3, name, entry, objects_dir), bucket["objects"]
            )
            report.warnings += [warning for warning in warnings if warning]
            report.buckets += 1
            report.objects += len(bucket["objects"])
            report.bytes += sum(entry["size"] for entry in bucket["objects"])
    report.seconds = time.monotonic() - started
    return report


def restore_messages(endpoint_url: str, region: str, manifest: dict[str, Any]) -> int:
    """Send the saved messages to their queues again (after the queues were created)."""
    _, sqs = _clients(endpoint_url, region)
    sent = 0
    for name, messages in manifest.get("queues", {}).items():
        if not messages:
            continue
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        for message in messages:
            attributes = {
                key: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
                for key, value in message["message_attributes"].items()
            }
            sqs.send_message(QueueUrl=url, MessageBody=message["body"], MessageAttributes=attributes)
            sent += 1
    return sent


# ---- the warehouse's view ----------------------------------------------------------------------


def loaded_but_missing(warehouse_url: str, schema: str, endpoint_url: str, region: str) -> tuple[int, list[str]]:
    """Object versions the ledger shows as loaded whose key is not in S3: (how many, a few s3:// URIs)."""
    import sqlalchemy as sa

    engine = sa.create_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("load_ledger", schema=schema):
                return 0, []
            table = f"{engine.dialect.identifier_preparer.quote_schema(schema)}.load_ledger"
            rows = conn.execute(
                sa.text(f"SELECT DISTINCT bucket, key FROM {table} WHERE status = :status"), {"status": "loaded"}
            ).all()
    finally:
        engine.dispose()
    if not rows:
        return 0, []
    s3, _ = _clients(endpoint_url, region)
    present: dict[str, set[str]] = {}
    for bucket in sorted({row.bucket for row in rows}):
        try:
            present[bucket] = {
                item["Key"]
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for item in page.get("Contents", [])
            }
        except s3.exceptions.NoSuchBucket:
            present[bucket] = set()
    missing = sorted(f"s3://{row.bucket}/{row.key}" for row in rows if row.key not in present[row.bucket])
    return len(missing), missing[:SHOWN]
