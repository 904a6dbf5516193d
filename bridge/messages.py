"""What an SQS message body says: the S3 ObjectCreated records in it, and why the rest cannot be read.

Bodies are untrusted (anyone who can send to the queue writes them): nothing here raises on any body, and
every field read is of the type S3 sends, so a malformed record is the sender's error with its reason,
never an exception that stops the bridge's receive or a value the HEAD mistakes for an S3 outage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from berlin_rentals.source import decode_event_key


class UnparsableMessage(ValueError):
    """The message is not an S3 event notification we can read. It goes to the DLQ."""


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    etag: str | None
    size: int | None
    version_id: str | None
    sequencer: str | None


@dataclass(frozen=True)
class ParsedMessage:
    """What one SQS message body says: its readable ObjectCreated records, and why the rest (or the whole
    body) cannot be read. A message with any problem goes to the DLQ with them as its reason, after its
    readable records are announced."""

    created: list[ObjectCreated]
    problems: list[str]


def _records(document: dict) -> list[dict]:
    if document.get("Type") == "Notification" and "Message" in document:  # delivered through SNS
        try:
            document = json.loads(document["Message"])
        except (TypeError, ValueError, RecursionError) as exc:
            raise UnparsableMessage(f"SNS message body is not JSON: {type(exc).__name__}: {exc}"[:500]) from None
        if not isinstance(document, dict):
            raise UnparsableMessage("SNS message body is not a JSON object")
    if document.get("Event") == "s3:TestEvent":  # sent once when a notification is configured
        return []
    records = document.get("Records")
    if not isinstance(records, list) or not records:
        raise UnparsableMessage("no `Records` list in the message")
    return records


def _text(value: Any, field: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise UnparsableMessage(f"`{field}` is {type(value).__name__}, not a string")
    return value


def _object_created(record: Any) -> ObjectCreated | None:
    """One record, every field of the type S3 sends (a number where a string belongs is the sender's
    error, not an S3 outage to wait out); None for an event of another kind."""
    if not isinstance(record, dict):
        raise UnparsableMessage(f"a record is {type(record).__name__}, not an object")
    name = record.get("eventName")
    if record.get("eventSource") != "aws:s3" or not (isinstance(name, str) and name.startswith("ObjectCreated")):
        return None
    s3 = record.get("s3")
    bucket = s3.get("bucket") if isinstance(s3, dict) else None
    obj = s3.get("object") if isinstance(s3, dict) else None
    if not isinstance(bucket, dict) or not isinstance(obj, dict):
        raise UnparsableMessage("no `s3.bucket` or `s3.object` object in the record")
    size = obj.get("size")
    if size is not None and type(size) is not int:
        raise UnparsableMessage(f"`s3.object.size` is {type(size).__name__}, not a byte count")
    if size is not None and size < 0:
        raise UnparsableMessage(f"`s3.object.size` is {size}, not a byte count")
    return ObjectCreated(
        bucket=_text(bucket.get("name"), "s3.bucket.name"),
        key=decode_event_key(_text(obj.get("key"), "s3.object.key")),
        etag=_text(obj.get("eTag", obj.get("etag")), "s3.object.eTag", optional=True),
        size=size,
        version_id=_text(obj.get("versionId"), "s3.object.versionId", optional=True),
        sequencer=_text(obj.get("sequencer"), "s3.object.sequencer", optional=True),
    )


def parse_message(body: Any) -> ParsedMessage:
    """Every readable ObjectCreated record of one SQS message body, and a reason for each one that is not
    (a test event has neither). Never raises: the body is untrusted, and one that broke the parser would
    stop the rest of its receive."""
    try:
        document = json.loads(body)
        if not isinstance(document, dict):
            raise UnparsableMessage("message body is not a JSON object")
        records = _records(document)
    except UnparsableMessage as reason:
        return ParsedMessage([], [str(reason)])
    except (TypeError, ValueError, RecursionError) as exc:  # RecursionError: a body nested thousands deep
        return ParsedMessage([], [f"message body is not JSON: {type(exc).__name__}: {exc}"[:500]])
    created, problems = [], []
    for number, record in enumerate(records, 1):
        try:
            found = _object_created(record)
        except (UnparsableMessage, ValueError, TypeError, RecursionError) as exc:
            problems.append(f"record {number}: malformed S3 record ({exc})")
            continue
        if found is not None:
            created.append(found)
    return ParsedMessage(created, problems)
