"""The raw zone as the system of record: each warehouse row names the exact raw version and line it came
from, the ingest reads exactly the version its event named, and a listing's raw line comes back by one
command. On the local stack (moto over HTTP with versioning on, PostgreSQL, Prefect)."""

from __future__ import annotations

import re
import zipfile
from dataclasses import replace

import boto3
import pytest

from berlin_rentals.archive import BadArchive
from berlin_rentals.config import RawRecordSettings
from berlin_rentals.errors import ObjectChanged, ObjectGone
from berlin_rentals.model import LINEAGE
from berlin_rentals.raw_record import RawPointer, fetch_raw_line
from berlin_rentals.s3 import download_source, head_source
from berlin_rentals.source import InvalidSource, normalize_etag
from berlin_rentals.synthetic import zip_lines
from berlin_rentals.warehouse.sql import SQL_DIR

MEMBER = "immobilienscout24_berlin_20190113_15.json"


def raw_bucket_in_process():
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="raw", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_bucket_versioning(Bucket="raw", VersioningConfiguration={"Status": "Enabled"})
    return s3


def sample_lines(sample_zip) -> list[bytes]:
    with zipfile.ZipFile(sample_zip) as archive:
        return archive.read(MEMBER).splitlines()


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


def test_an_events_version_gone_while_the_key_holds_the_same_bytes_is_that_version(in_process_aws, tmp_path):
    """After the local stack's restore (moto cannot keep version ids) a copied run's version id is gone but
    the key holds the same bytes (same ETag): those are read, and the source says which version stood in."""
    s3 = raw_bucket_in_process()
    old = s3.put_object(Bucket="raw", Key="raw/a.zip", Body=b"v1")
    new = s3.put_object(Bucket="raw", Key="raw/a.zip", Body=b"v1")
    s3.delete_object(Bucket="raw", Key="raw/a.zip", VersionId=old["VersionId"])
    source = head_source(s3, "raw", "raw/a.zip", old["ETag"], raw_bucket="raw", version_id=old["VersionId"])
    assert source.version_id == new["VersionId"] and source.etag == normalize_etag(old["ETag"])
    assert source.stood_in_for == old["VersionId"]
    assert f"version {old['VersionId']} is gone" in source.note and new["VersionId"] in source.note
    assert download_source(s3, source, tmp_path / "a.zip").read_bytes() == b"v1"
    # The version the event named, when it is there, stands for itself.
    assert head_source(s3, "raw", "raw/a.zip", new["ETag"], raw_bucket="raw", version_id=new["VersionId"]).note is None
    # Other bytes under the key are never passed off as the event's version: gone, and the advice is true.
    s3.put_object(Bucket="raw", Key="raw/a.zip", Body=b"v2")
    s3.delete_object(Bucket="raw", Key="raw/a.zip", VersionId=new["VersionId"])
    with pytest.raises(ObjectGone, match=f"version {new['VersionId']} of s3://raw/raw/a.zip does not exist"):
        head_source(s3, "raw", "raw/a.zip", new["ETag"], raw_bucket="raw", version_id=new["VersionId"])
    # Without an ETag to compare, a gone version is gone.
    with pytest.raises(ObjectGone):
        head_source(s3, "raw", "raw/a.zip", None, raw_bucket="raw", version_id=new["VersionId"])
