"""A catch-up's fan-out, pure: its files as a run parameter and back, and the key each share's run is known by.

A catch-up with more files to ingest than ETL_FANOUT_FILES starts runs of its own deployment, each over a
given list of files (a share): the same flow, the same path through the pipeline, just no listing. The list
arrives as a run parameter, which anyone with the UI can edit: each file is checked on its own, and one bad
entry is refused with its reason while the others are ingested.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from berlin_rentals.catch_up import RawObject, as_utc
from berlin_rentals.source import InvalidSource, normalize_etag, validate_key


def as_parameter(objects: list[RawObject]) -> list[dict[str, Any]]:
    return [
        {"key": o.key, "etag": o.etag, "size": o.size, "last_modified": o.last_modified.isoformat()} for o in objects
    ]


def _raw_object(item: Any, raw_prefix: str) -> RawObject:
    try:
        key = validate_key(str(item["key"]), raw_prefix)
        etag = normalize_etag(str(item["etag"]))
        modified = as_utc(datetime.fromisoformat(str(item["last_modified"])))
        size = int(item.get("size") or 0)
    except InvalidSource:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise InvalidSource(f"not a file of a share ({{key, etag, last_modified, size}}): {exc!r}") from None
    if etag is None:
        raise InvalidSource(f"{key!r} has no ETag")
    return RawObject(key, etag, size, modified)


def raw_objects(files: Any, raw_prefix: str) -> tuple[list[RawObject], list[tuple[str, str]]]:
    """The share's files (each key under the raw prefix, each ETag an S3 ETag), and those refused: (what was
    given, why). A refused entry never reaches the ledger or any SQL."""
    if not isinstance(files, list):
        raise InvalidSource(f"files must be a list of {{key, etag, last_modified, size}}, not {type(files).__name__}")
    objects: list[RawObject] = []
    refused: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for item in files:
        try:
            obj = _raw_object(item, raw_prefix)
        except InvalidSource as exc:
            refused.append((repr(item)[:200], str(exc)))
            continue
        if (obj.key, obj.etag) not in seen:  # a version given twice is one file
            seen.add((obj.key, obj.etag))
            objects.append(obj)
    return objects, refused


def share_key(parent: str, share: list[RawObject]) -> str:
    """The idempotency key of the run over this share: the parent run and the files it carries. A retried
    catch-up (the same flow run id) finds the runs of the shares it started before, and a share whose files
    differ (the listing changed between the attempts) is a run of its own, never mistaken for an old one."""
    digest = hashlib.sha256("\n".join(sorted(f"{o.key}\0{o.etag}" for o in share)).encode()).hexdigest()
    return f"{parent}-share-{digest[:32]}"
