"""A backfill larger than ETL_FANOUT_FILES goes out as runs of the catch-up deployment over a share of the files
each, on the work pool, which the catch-up waits for and reports on: here two runs on the local worker, through
the real Prefect server (prefect.yaml deployed), loading into the stack's own schema as the worker's
environment says. A share is the catch-up over a given list: checked file by file, keyed by its files."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from berlin_rentals.shares import raw_objects
from tests.stack.test_catch_up import _day, _upload_hour


def test_a_share_for_another_bucket_than_the_runs_own_is_refused_as_a_configuration_error(settings):
    from prefect import flow

    from berlin_rentals.config import ConfigError
    from flows.catch_up import given_objects

    @flow
    def check(bucket):
        return given_objects(settings, bucket, [])

    assert check(settings.raw_bucket) == ([], [])
    with pytest.raises(ConfigError, match="must share their settings"):
        check("rentals-bench-raw")


def test_a_share_with_a_bad_entry_ingests_its_other_files(settings, s3):
    """One bad entry (edited in the UI, or a key the listing should never have passed) costs only itself:
    before, the whole share's run failed on it, every hour."""
    from berlin_rentals.shares import as_parameter
    from flows.catch_up import catch_up
    from tests.stack.test_catch_up import _ledger

    folder, day = uuid.uuid4().hex[:8], _day()
    files = [_upload_hour(s3, settings, folder, day + timedelta(hours=h), seed=h) for h in range(2)]
    objects, _ = raw_objects(
        [{"key": k, "etag": e, "last_modified": day.isoformat(), "size": 1} for k, e in files], settings.raw_prefix
    )
    given = as_parameter(objects)
    given.insert(1, {"key": f"{settings.raw_prefix}{folder}/../secrets.zip", "etag": "b" * 32, "last_modified": "x"})

    report = catch_up(files=given, bucket=settings.raw_bucket, max_concurrency=1, batch_max_files=2)

    assert (report["found"], report["loaded_now"], report["failed_now"]) == (2, 2, 0), report
    assert len(report["refused"]) == 1 and "relative path segment" in report["refused"][0]
    assert _ledger(settings) == {key: ("loaded", 0) for key, _ in files}


def test_a_retried_catch_up_whose_shares_changed_gets_runs_for_its_new_files(worker, warehouse, s3):
    """The UI's Retry reruns a catch-up under the same flow run id; its listing may have changed since. The
    shares' runs are keyed by the files they carry: before, by their position ("share 1 of 1"), and the new
    files were given the earlier run back and never ingested."""
    from prefect import flow

    from flows.fan_out import fan_out
    from tests.stack.test_catch_up import _ledger

    folder, day = uuid.uuid4().hex[:8], _day()
    files = [_upload_hour(s3, warehouse, folder, day + timedelta(hours=h), seed=h) for h in range(2)]
    objects, _ = raw_objects(
        [{"key": k, "etag": e, "last_modified": day.isoformat(), "size": 1} for k, e in files], warehouse.raw_prefix
    )

    @flow(name="retried-catch-up")
    def two_attempts_of_one_run():
        first, _ = fan_out(warehouse, objects[:1], 1, 1, 1)  # the first attempt's listing: one file
        second, _ = fan_out(warehouse, objects, 1, 1, 2)  # the retry's: two (one share of both)
        return first, second

    first, second = two_attempts_of_one_run()
    assert [o.status for o in first] == ["loaded"]
    assert [o.status for o in second] == ["loaded", "loaded"]
    ledger = {k: v for k, v in _ledger(warehouse).items() if f"/{folder}/" in k}
    assert ledger == {key: ("loaded", 0) for key, _ in files}
