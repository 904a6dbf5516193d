from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from berlin_rentals.source import (
    InvalidSource,
    SourceObject,
    batch_hour_from_key,
    decode_event_key,
    normalize_etag,
    validate_key,
)
from berlin_rentals.synthetic import derived_batch, read_sample_records


def test_batch_hour_comes_from_the_name():
    assert batch_hour_from_key("raw/immobilienscout24_berlin_20190113_15.zip") == datetime(2019, 1, 13, 15, tzinfo=UTC)
    assert batch_hour_from_key("raw/2019/immobilienscout24_berlin_20191399_15.zip") is None
    assert batch_hour_from_key("raw/export.zip") is None


def test_without_an_hour_in_the_name_the_last_modified_hour_is_used_and_said():
    source = SourceObject("b", "raw/export.zip", "e" * 32, 1, datetime(2024, 3, 1, 10, 42, 7, tzinfo=UTC))
    assert source.batch_hour == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert source.batch_hour_source == "last_modified"


def test_etags_are_normalised_and_anything_else_refused():
    assert normalize_etag('"793FB4AE6D07BB5B55EA181AD1FED13A"') == "793fb4ae6d07bb5b55ea181ad1fed13a"
    assert normalize_etag('"793fb4ae6d07bb5b55ea181ad1fed13a-12"') == "793fb4ae6d07bb5b55ea181ad1fed13a-12"
    with pytest.raises(InvalidSource):
        normalize_etag("'; drop table x; --")


def test_event_keys_are_url_decoded_and_checked():
    assert decode_event_key("raw/my+file%C3%A4.zip") == "raw/my fileä.zip"
    assert validate_key("raw/a b.zip", "raw/") == "raw/a b.zip"
    for bad in ("", "raw/../etc/passwd", "raw/a\x00.zip", "other/a.zip", "raw/" + "x" * 1100):
        with pytest.raises(InvalidSource):
            validate_key(bad, "raw/")


def test_a_name_far_ahead_of_the_upload_is_flagged():
    uploaded = datetime(2019, 1, 13, 15, 7, tzinfo=UTC)
    future = SourceObject("b", "raw/immobilienscout24_berlin_20310113_15.zip", "e" * 32, 1, uploaded)
    assert future.batch_hour == datetime(2031, 1, 13, 15, tzinfo=UTC)
    assert future.batch_hour_source == "name_in_future"
    # within a day of the upload the name stands (clock skew, an early upload); late files are normal
    early = SourceObject("b", "raw/immobilienscout24_berlin_20190114_14.zip", "e" * 32, 1, uploaded)
    assert early.batch_hour_source == "name"
    late = SourceObject("b", "raw/immobilienscout24_berlin_20180101_00.zip", "e" * 32, 1, uploaded)
    assert (late.batch_hour, late.batch_hour_source) == (datetime(2018, 1, 1, tzinfo=UTC), "name")


def test_a_generated_batch_has_the_same_bytes_whenever_it_is_built(monkeypatch):
    # make demo's second run must find the same ETags and skip every file; the zip's member
    # timestamp was the current time, so each run uploaded new versions of the same batches.
    records = read_sample_records()
    hour = datetime(2019, 1, 13, 16, tzinfo=UTC)
    first = derived_batch(records, hour, rent_factor=1.02, modified=hour, seed=1, new_listings=3)
    real_localtime = time.localtime
    monkeypatch.setattr(time, "localtime", lambda *args: real_localtime(time.time() + 3600))
    assert derived_batch(records, hour, rent_factor=1.02, modified=hour, seed=1, new_listings=3) == first


class _NoS3:
    """An S3 client that fails the test on any call: the refusal must come before any I/O."""

    def __getattr__(self, name):
        pytest.fail(f"S3 was called ({name}) before the bucket was checked")


def test_the_flow_refuses_a_bucket_other_than_the_raw_bucket_before_any_io(monkeypatch):
    import tasks.extract
    from berlin_rentals.config import Settings

    monkeypatch.setattr(tasks.extract, "s3_client", lambda settings: _NoS3())
    settings = Settings(warehouse_url="postgresql+psycopg://nowhere/db")
    with pytest.raises(InvalidSource, match="not the raw bucket"):
        tasks.extract.inspect_source.fn(
            settings, "someone-elses-bucket", "raw/immobilienscout24_berlin_20190113_15.zip", None
        )


def test_a_replay_refuses_a_bucket_other_than_the_raw_bucket_before_any_io(monkeypatch):
    import flows.replay_rejects

    def no_ledger(*args, **kwargs):
        pytest.fail("the ledger was read before the bucket was checked")

    monkeypatch.setenv("WAREHOUSE_URL", "postgresql+psycopg://nowhere/db")
    monkeypatch.setattr(flows.replay_rejects, "check_replayable", no_ledger)
    monkeypatch.setattr(flows.replay_rejects, "inspect_source", no_ledger)
    with pytest.raises(InvalidSource, match="not the raw bucket"):
        flows.replay_rejects.replay_rejects.fn("someone-elses-bucket", "raw/immobilienscout24_berlin_20190113_15.zip")
