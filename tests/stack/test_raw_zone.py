"""The raw zone as the system of record: each warehouse row names the exact raw version and line it came
from, the ingest reads exactly the version its event named, and a listing's raw line comes back by one
command. On the local stack (moto over HTTP with versioning on, PostgreSQL, Prefect)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import replace

import boto3
import pytest
import sqlalchemy as sa

from berlin_rentals.archive import BadArchive
from berlin_rentals.config import BridgeSettings, RawRecordSettings
from berlin_rentals.errors import ObjectChanged
from berlin_rentals.model import LINEAGE
from berlin_rentals.raw_record import RawPointer, fetch_raw_line
from berlin_rentals.s3 import download_source, head_source
from berlin_rentals.source import InvalidSource, normalize_etag
from berlin_rentals.synthetic import zip_lines
from berlin_rentals.warehouse.ddl import create_warehouse
from berlin_rentals.warehouse.sql import SQL_DIR
from bridge.messages import parse_message
from bridge.sqs_bridge import Bridge, prefect_event
from flows.ingest import ingest_file
from tests.helpers import query, scalar, upload

SAMPLE_NAME = "immobilienscout24_berlin_20190113_15.zip"
MEMBER = "immobilienscout24_berlin_20190113_15.json"
LINEAGE_TABLES = ("fact_flats", "flat_snapshots", "rejected_records")


def raw_bucket_in_process():
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="raw", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_bucket_versioning(Bucket="raw", VersioningConfiguration={"Status": "Enabled"})
    return s3


def sample_lines(sample_zip) -> list[bytes]:
    with zipfile.ZipFile(sample_zip) as archive:
        return archive.read(MEMBER).splitlines()


def raw_record(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "berlin_rentals.raw_record", *args],
        env=dict(os.environ),
        capture_output=True,
        timeout=120,
    )


def pointers(settings, table: str) -> set[tuple]:
    return {tuple(r) for r in query(settings, f"SELECT source_bucket, source_version_id FROM {{schema}}.{table}")}


def test_every_sql_file_that_writes_lineage_writes_the_raw_pointers():
    writers = [
        "load/merge_into_fact_flats.sql",
        "postgresql/merge_into_fact_flats.sql",
        "load/replace_flat_snapshots.sql",
        "load/replace_rejected_records.sql",
        "load/restate_key_facts.sql",
        "replay/insert_replayed_flat_snapshots.sql",
    ]
    for path in writers:
        body = (SQL_DIR / path).read_text()
        for column, file_column in (("source_bucket", "bucket"), ("source_version_id", "version_id")):
            # named as a target and given a value: a staged row's own (an INSERT's list and VALUES, or SET
            # and its source), or its file's row of the load (stage_batch_files AS b)
            named = len(re.findall(rf"\b{column}\b", body))
            assert named >= 2 or (named == 1 and f"b.{file_column}" in body), (path, column)
    assert {c.name for c in LINEAGE} >= {"source_bucket", "source_version_id"}


def test_an_overwritten_key_loads_the_version_its_event_named(settings, s3, sample_zip):
    """v1 is announced, v2 overwrites the key before the run reads it: the run still loads v1's bytes,
    and every row it writes names v1's version id."""
    v1 = zip_lines(MEMBER, [*sample_lines(sample_zip), b"{not json"])
    key, etag_v1 = upload(s3, settings, SAMPLE_NAME, v1)
    version_v1 = s3.head_object(Bucket=settings.raw_bucket, Key=key)["VersionId"]
    s3.put_object(Bucket=settings.raw_bucket, Key=key, Body=zip_lines(MEMBER, sample_lines(sample_zip)[:2]))
    assert s3.head_object(Bucket=settings.raw_bucket, Key=key)["VersionId"] != version_v1

    state = ingest_file(settings.raw_bucket, key, etag_v1, False, version_v1, return_state=True)
    result = state.result(raise_on_failure=False)
    assert state.is_completed() and result["status"] == "loaded", result
    assert result["fact_inserted"] == 11 and result["rejected"] == 1  # v1's content, not v2's two lines
    for table in LINEAGE_TABLES:
        assert pointers(settings, table) == {(settings.raw_bucket, version_v1)}, table
    ledger = query(settings, "SELECT etag, version_id FROM {schema}.load_ledger WHERE key = :k", k=key)
    assert [tuple(r) for r in ledger] == [(etag_v1, version_v1)]


def test_a_listings_raw_line_comes_back_by_one_command(settings, s3, sample_zip):
    key, etag = upload(s3, settings, SAMPLE_NAME, sample_zip.read_bytes())
    version = s3.head_object(Bucket=settings.raw_bucket, Key=key)["VersionId"]
    state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    assert state.is_completed(), state.result(raise_on_failure=False)
    row = query(
        settings,
        "SELECT source_bucket, source_version_id, source_member, source_line FROM {schema}.fact_flats"
        " WHERE listing_id = 56906504",
    )[0]
    assert tuple(row) == (settings.raw_bucket, version, MEMBER, row.source_line) and row.source_line >= 1
    expected = sample_lines(sample_zip)[row.source_line - 1]

    # the key is overwritten after the load: the pointer still names the version that was loaded
    s3.put_object(Bucket=settings.raw_bucket, Key=key, Body=zip_lines(MEMBER, [b'{"ok": true, "data": {}}']))
    done = raw_record("56906504")
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected + b"\n"
    assert json.loads(done.stdout)["data"]["id"] == "56906504"
    assert version.encode() in done.stderr and key.encode() in done.stderr

    by_position = raw_record(
        "--key", key, "--etag", etag, "--version-id", version, "--member", MEMBER, "--line", str(row.source_line)
    )
    assert by_position.returncode == 0, by_position.stderr
    assert by_position.stdout == done.stdout

    missing = raw_record("1")
    assert missing.returncode == 1 and b"is not in" in missing.stderr


def test_a_warehouse_made_before_the_raw_pointers_gets_them_and_the_next_load_fills_them(settings, s3, sample_zip):
    schema = settings.warehouse_schema
    engine = sa.create_engine(settings.warehouse_url)
    with engine.begin() as conn:
        for table in LINEAGE_TABLES:
            conn.execute(sa.text(f"ALTER TABLE {schema}.{table} DROP COLUMN source_bucket"))
            conn.execute(sa.text(f"ALTER TABLE {schema}.{table} DROP COLUMN source_version_id"))
    engine.dispose()
    added = create_warehouse(settings.warehouse_url, schema)
    assert sorted(added) == sorted(f"{t}.{c}" for t in LINEAGE_TABLES for c in ("source_bucket", "source_version_id"))
    key, etag = upload(s3, settings, SAMPLE_NAME, sample_zip.read_bytes())
    assert ingest_file(settings.raw_bucket, key, etag)["status"] == "loaded"
    version = s3.head_object(Bucket=settings.raw_bucket, Key=key)["VersionId"]
    assert pointers(settings, "fact_flats") == {(settings.raw_bucket, version)}
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.fact_flats WHERE source_version_id IS NULL") == 0

    # a row loaded before the pointers existed: found by key and ETag while the key holds those bytes
    engine = sa.create_engine(settings.warehouse_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {schema}.fact_flats SET source_bucket = NULL, source_version_id = NULL"))
    engine.dispose()
    line = query(settings, "SELECT source_line FROM {schema}.fact_flats WHERE listing_id = 56906504")[0][0]
    done = raw_record("56906504")
    assert done.returncode == 0, done.stderr
    assert done.stdout == sample_lines(sample_zip)[line - 1] + b"\n"


def test_a_named_version_is_read_even_after_the_key_is_overwritten(in_process_aws, tmp_path):
    s3 = raw_bucket_in_process()
    first = s3.put_object(Bucket="raw", Key="raw/a.zip", Body=b"v1")
    s3.put_object(Bucket="raw", Key="raw/a.zip", Body=b"v2")
    source = head_source(s3, "raw", "raw/a.zip", first["ETag"], raw_bucket="raw", version_id=first["VersionId"])
    assert source.version_id == first["VersionId"]
    assert download_source(s3, source, tmp_path / "a.zip").read_bytes() == b"v1"
    with pytest.raises(ObjectChanged):  # without the version: the key's current bytes, refused by ETag
        head_source(s3, "raw", "raw/a.zip", first["ETag"], raw_bucket="raw")
    with pytest.raises(InvalidSource):  # an event's version id is untrusted text
        head_source(s3, "raw", "raw/a.zip", None, raw_bucket="raw", version_id="v1\n")


def test_the_bridge_announces_the_version_its_record_names_even_once_replaced(settings, s3, sample_zip):
    v1 = sample_zip.read_bytes()
    key, etag_v1 = upload(s3, settings, SAMPLE_NAME, v1)
    version_v1 = s3.head_object(Bucket=settings.raw_bucket, Key=key)["VersionId"]
    s3.put_object(Bucket=settings.raw_bucket, Key=key, Body=zip_lines(MEMBER, sample_lines(sample_zip)[:2]))

    def record(**version: str) -> str:
        obj = {"key": key, "eTag": etag_v1, "size": len(v1), **version}
        s3_part = {"bucket": {"name": settings.raw_bucket}, "object": obj}
        return json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": s3_part}]})

    bridge = Bridge(BridgeSettings.from_env(), api_url="http://127.0.0.1:9", post=lambda events: None)
    (named,) = parse_message(record(versionId=version_v1)).created
    source = bridge.confirm(named)
    assert (source.etag, source.version_id) == (etag_v1, version_v1)
    assert prefect_event(source)["payload"]["version_id"] == version_v1  # the trigger's `version_id`
    (unnamed,) = parse_message(record()).created
    assert bridge.confirm(unnamed) is None  # no version id: the key's current bytes differ, not announced


def test_a_pointer_whose_version_is_gone_reads_the_same_bytes_by_etag_and_says_so(in_process_aws, tmp_path, sample_zip):
    settings = RawRecordSettings.from_env({"ETL_RAW_BUCKET": "raw"})
    s3 = raw_bucket_in_process()
    body = sample_zip.read_bytes()
    old = s3.put_object(Bucket="raw", Key="raw/a.zip", Body=body)
    pointer = RawPointer("raw", "raw/a.zip", normalize_etag(old["ETag"]), old["VersionId"], MEMBER, 3)
    line, note = fetch_raw_line(s3, pointer, tmp_path, settings)
    assert line == sample_lines(sample_zip)[2] and note is None
    # as after the local stack's restore: the same bytes under a new version id, the old one gone
    s3.put_object(Bucket="raw", Key="raw/a.zip", Body=body)
    s3.delete_object(Bucket="raw", Key="raw/a.zip", VersionId=old["VersionId"])
    line, note = fetch_raw_line(s3, pointer, tmp_path, settings)
    assert line == sample_lines(sample_zip)[2] and "is gone" in note
    s3.put_object(Bucket="raw", Key="raw/a.zip", Body=zip_lines(MEMBER, [b"{}"] * 3))
    with pytest.raises(ObjectChanged):  # other bytes are never passed off as the pointer's line
        fetch_raw_line(s3, pointer, tmp_path, settings)
    with pytest.raises(BadArchive, match="no line 9"):
        fetch_raw_line(
            s3,
            replace(
                pointer,
                version_id=None,
                etag=normalize_etag(s3.head_object(Bucket="raw", Key="raw/a.zip")["ETag"]),
                line=9,
            ),
            tmp_path,
            settings,
        )
