"""What identifies one object version in the raw bucket, and what its name tells us."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from urllib.parse import unquote_plus

# S3 keys reach us from event payloads: treat them as untrusted text.
_MAX_KEY_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ETAG = re.compile(r'^"?([0-9a-fA-F]{32}(?:-[0-9]{1,5})?)"?$')
MAX_NAME_AHEAD_OF_UPLOAD = timedelta(hours=24)
_VERSION_ID = re.compile(r"[\x21-\x7e]+")
_BATCH_HOUR = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})_(\d{2})(?!\d)")


class InvalidSource(ValueError):
    """The bucket, key or ETag cannot name an object this pipeline will read. Terminal."""


def normalize_etag(etag: str | None) -> str | None:
    """S3 quotes ETags; multipart uploads add `-N`. Keep the bare hex form, reject anything else."""
    if etag is None or etag == "":
        return None
    match = _ETAG.fullmatch(etag.strip())
    if not match:
        raise InvalidSource(f"ETag {etag!r} is not an S3 ETag")
    return match.group(1).lower()


def validate_key(key: str, prefix: str = "") -> str:
    if not key or len(key.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
        raise InvalidSource(f"object key {key[:80]!r} is empty or longer than {_MAX_KEY_BYTES} bytes")
    if _CONTROL.search(key):
        raise InvalidSource(f"object key {key[:80]!r} contains control characters")
    if any(part in ("..", ".") for part in key.split("/")):
        raise InvalidSource(f"object key {key[:80]!r} contains a relative path segment")
    if prefix and not key.startswith(prefix):
        raise InvalidSource(f"object key {key!r} is outside the raw prefix {prefix!r}")
    return key


def validate_version_id(version_id: str | None) -> str | None:
    """An S3 version id from an event or a caller: opaque, but printable ASCII of at most 1024 bytes."""
    if version_id is None:
        return None
    if not version_id or len(version_id) > _MAX_KEY_BYTES or not _VERSION_ID.fullmatch(version_id):
        raise InvalidSource(f"version id {version_id[:80]!r} is not an S3 version id")
    return version_id


def decode_event_key(raw_key: str) -> str:
    """S3 event notifications URL-encode the key (spaces as '+')."""
    return unquote_plus(raw_key)


def batch_hour_from_key(key: str) -> datetime | None:
    """`immobilienscout24_berlin_20190113_15.zip` -> 2019-01-13 15:00 UTC (the name's hour is read as UTC)."""
    name = key.rsplit("/", 1)[-1]
    for match in _BATCH_HOUR.finditer(name):
        year, month, day, hour = (int(g) for g in match.groups())
        try:
            return datetime(year, month, day, hour, tzinfo=UTC)
        except ValueError:
            continue
    return None


class Version(NamedTuple):
    """One version of one raw object as the ledger names it, confirmed by a HEAD or not (yet)."""

    bucket: str
    key: str
    etag: str


@dataclass(frozen=True)
class SourceObject:
    """One version of one raw object, as confirmed by a HEAD request."""

    bucket: str
    key: str
    etag: str
    size: int
    last_modified: datetime
    version_id: str | None = None
    # The version id the caller named, when it was gone and the key's current version, with the same ETag
    # (the same bytes), stands in for it: after the local stack's restore, which cannot keep version ids.
    stood_in_for: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def note(self) -> str | None:
        """What a person should know about which version was read (the run's message says it)."""
        if self.stood_in_for is None:
            return None
        current = f"version {self.version_id}" if self.version_id else "object (it has no version id)"
        return (
            f"version {self.stood_in_for} is gone; the key's current {current} has the same ETag {self.etag} "
            "(the same bytes) and was read instead"
        )

    @property
    def version(self) -> Version:
        return Version(self.bucket, self.key, self.etag)

    @property
    def lineage_pointers(self) -> dict[str, str | None]:
        """The bind parameters of the lineage columns that, beside key and ETag, name this exact version."""
        return {"source_bucket": self.bucket, "source_version_id": self.version_id}

    @property
    def batch_hour(self) -> datetime:
        return batch_hour_from_key(self.key) or self.last_modified.astimezone(UTC).replace(
            minute=0, second=0, microsecond=0
        )

    @property
    def batch_hour_source(self) -> str:
        """Lineage: whether the hour came from the object's name or its LastModified.

        `name_in_future` flags a name whose hour lies more than a day after the upload: a batch cannot
        be uploaded before its hour began, so the name is suspect. The rows still load under the name's
        hour (what the source said, and what catch-up's window reads), and the ledger and the lineage
        artifact carry the flag for a person to look at.
        """
        named = batch_hour_from_key(self.key)
        if named is None:
            return "last_modified"
        if named > self.last_modified.astimezone(UTC) + MAX_NAME_AHEAD_OF_UPLOAD:
            return "name_in_future"
        return "name"
