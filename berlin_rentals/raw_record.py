"""Get a loaded listing's raw line back from the raw zone, by the pointers its warehouse row keeps.

    python -m berlin_rentals.raw_record 56906504                  # the line fact_flats' row came from
    python -m berlin_rentals.raw_record --key raw/…zip --etag … --member ….json --line 3 [--version-id …]

The line is written to stdout exactly as it is in the zip (pipe it to `jq`); where it came from goes to
stderr. The object version is read by its version id and ETag, so an overwrite of the key since the
load changes nothing. Needs WAREHOUSE_URL (the listing form) and read access to the raw prefix
(`python -m provisioning.aws policies`: dwh-raw-reader).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from berlin_rentals.archive import DEFAULT_MAX_MEMBERS, BadArchive, iter_member_lines, open_archive
from berlin_rentals.config import ConfigError, RawRecordSettings
from berlin_rentals.errors import ObjectGone
from berlin_rentals.s3 import download_version, require_raw_bucket, s3_client
from berlin_rentals.source import InvalidSource, normalize_etag, validate_key, validate_version_id
from berlin_rentals.warehouse.sql import statement


class NoRawPointer(LookupError):
    """The warehouse holds no (complete) pointer to a raw line for this listing."""


@dataclass(frozen=True)
class RawPointer:
    bucket: str
    key: str
    etag: str
    version_id: str | None
    member: str
    line: int

    def describe(self) -> str:
        version = f" version {self.version_id}" if self.version_id else ""
        return f"s3://{self.bucket}/{self.key}{version} (ETag {self.etag}), member {self.member}, line {self.line}"


def listing_pointer(engine: sa.Engine, schema: str, listing_id: int, default_bucket: str) -> RawPointer:
    """The pointer of the listing's row in fact_flats. Rows loaded before source_bucket existed name no
    bucket: theirs is the raw bucket, the only one the pipeline reads."""
    with engine.connect() as conn:
        row = conn.execute(statement("raw/select_listing_raw_pointer.sql", schema), {"listing_id": listing_id}).first()
    if row is None:
        raise NoRawPointer(f"listing {listing_id} is not in {schema}.fact_flats")
    if row.source_member is None or row.source_line is None:
        # A restated key rebuilds a row from another file's snapshot, which keeps no line.
        raise NoRawPointer(
            f"listing {listing_id}'s row was rebuilt from a snapshot of s3://{row.source_bucket or default_bucket}/"
            f"{row.source_key} (ETag {row.source_etag}) and names no line: reload that file to restore it"
        )
    return RawPointer(
        bucket=row.source_bucket or default_bucket,
        key=row.source_key,
        etag=row.source_etag,
        version_id=row.source_version_id,
        member=row.source_member,
        line=int(row.source_line),
    )


def line_of(
    archive_path: Path,
    member: str,
    line: int,
    *,
    name: str,
    max_member_bytes: int,
    max_line_bytes: int,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> bytes:
    """One line of one member, read as a stream: the member is inflated only up to that line, under the
    load's own limits (a header's sizes are not trusted)."""
    with open_archive(archive_path, name, max_members=max_members) as archive:
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise BadArchive(f"{name}: no member {member!r}") from None
        lines = iter_member_lines(archive, info, name, max_member_bytes=max_member_bytes, max_line_bytes=max_line_bytes)
        for found in lines:
            if found.line_number == line:
                return found.raw
            if found.line_number > line:
                break
    raise BadArchive(f"{name}: member {member} has no line {line} (or it is blank)")


def fetch_raw_line(s3, pointer: RawPointer, workdir: Path, settings: RawRecordSettings) -> tuple[bytes, str | None]:
    """The line the pointer names, from exactly that object version; and a note when the version id is
    gone but the key still holds the same bytes (same ETag), e.g. after the local stack's restore."""
    archive = workdir / "raw.zip"
    note = None
    try:
        download_version(s3, pointer.bucket, pointer.key, pointer.etag, pointer.version_id, archive)
    except ObjectGone:
        if pointer.version_id is None:
            raise
        download_version(s3, pointer.bucket, pointer.key, pointer.etag, None, archive)
        note = f"version {pointer.version_id} is gone; the key's current version has the same ETag {pointer.etag}"
    name = f"s3://{pointer.bucket}/{pointer.key}"
    line = line_of(
        archive,
        pointer.member,
        pointer.line,
        name=name,
        max_member_bytes=settings.max_member_bytes,
        max_line_bytes=settings.max_line_bytes,
        max_members=settings.max_members,
    )
    return line, note


def raw_line(settings: RawRecordSettings, pointer: RawPointer) -> tuple[bytes, str | None]:
    require_raw_bucket(pointer.bucket, settings.raw_bucket)
    with tempfile.TemporaryDirectory(prefix="raw-record-") as workdir:
        return fetch_raw_line(s3_client(settings), pointer, Path(workdir), settings)


def _pointer(args: argparse.Namespace, settings: RawRecordSettings) -> RawPointer:
    if args.listing_id is None:
        return RawPointer(
            bucket=settings.raw_bucket,
            key=validate_key(args.key, settings.raw_prefix),
            etag=normalize_etag(args.etag),
            version_id=validate_version_id(args.version_id),
            member=args.member,
            line=args.line,
        )
    from berlin_rentals.warehouse.ddl import make_engine

    engine = make_engine(settings.listing_url())
    try:
        return listing_pointer(engine, settings.warehouse_schema, args.listing_id, settings.raw_bucket)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("listing_id", nargs="?", type=int, help="a listing in fact_flats")
    parser.add_argument("--key", help="instead of a listing: the raw object's key")
    parser.add_argument("--etag")
    parser.add_argument("--version-id")
    parser.add_argument("--member")
    parser.add_argument("--line", type=int)
    args = parser.parse_args(argv)
    by_position = (args.key, args.etag, args.member, args.line)
    if (args.listing_id is None) == (args.key is None) or (args.key is not None and None in by_position):
        parser.error("give a listing id, or --key, --etag, --member and --line (and --version-id if known)")
    settings = RawRecordSettings.from_env()
    try:
        pointer = _pointer(args, settings)
        line, note = raw_line(settings, pointer)
    except (NoRawPointer, ObjectGone, BadArchive, InvalidSource, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(pointer.describe() + (f"; {note}" if note else ""), file=sys.stderr)
    sys.stdout.buffer.write(line + b"\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
