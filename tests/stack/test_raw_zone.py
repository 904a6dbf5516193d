"""The raw zone as the system of record: each warehouse row names the exact raw version and line it came
from, the ingest reads exactly the version its event named, and a listing's raw line comes back by one
command. On the local stack (moto over HTTP with versioning on, PostgreSQL, Prefect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import sqlalchemy as sa

from berlin_rentals.config import BridgeSettings
from berlin_rentals.synthetic import zip_lines
from berlin_rentals.warehouse.ddl import create_warehouse
from bridge.messages import parse_message
from bridge.sqs_bridge import Bridge, prefect_event
from flows.ingest import ingest_file
from tests.helpers import query, scalar, upload
from tests.unit.test_raw_zone import MEMBER, sample_lines

SAMPLE_NAME = "immobilienscout24_berlin_20190113_15.zip"
LINEAGE_TABLES = ("fact_flats", "flat_snapshots", "rejected_records")


def raw_record(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "berlin_rentals.raw_record", *args],
        env=dict(os.environ),
        capture_output=True,
        timeout=120,
    )


def pointers(settings, table: str) -> set[tuple]:
    return {tuple(r) for r in query(settings, f"SELECT source_bucket, source_version_id FROM {{schema}}.{table}")}


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
