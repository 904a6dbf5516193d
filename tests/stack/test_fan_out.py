"""A backfill larger than ETL_FANOUT_FILES goes out as runs of the catch-up deployment over a share of the files
each, on the work pool, which the catch-up waits for and reports on: here two runs on the local worker, through
the real Prefect server (prefect.yaml deployed), loading into the stack's own schema as the worker's
environment says. A share is the catch-up over a given list: checked file by file, keyed by its files."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest

from berlin_rentals.shares import raw_objects
from berlin_rentals.source import InvalidSource
from tests.helpers import child_flow_runs_of, query, task_runs_of
from tests.unit.test_catch_up import _day, _run, _upload_hour


@pytest.mark.slow
def test_a_catch_up_above_the_fan_out_size_runs_its_shares_as_catch_up_runs_on_the_worker(
    worker, warehouse, s3, monkeypatch
):
    monkeypatch.setenv("ETL_FANOUT_RUN_FILES", "2")
    folder, day = uuid.uuid4().hex[:8], _day()
    files = [_upload_hour(s3, warehouse, folder, day + timedelta(hours=h), seed=h) for h in range(4)]

    run_id, report = _run(
        since=day,
        until=day + timedelta(hours=4),
        prefix=f"{warehouse.raw_prefix}{folder}/",
        max_concurrency=1,
        batch_max_files=2,
        fanout_above=2,
    )

    assert (report["found"], report["loaded_now"], report["failed_now"]) == (4, 4, 0), report
    shares = sorted(child_flow_runs_of(run_id), key=lambda r: r.name)
    assert [r.name.split(":")[0] for r in shares] == ["catch-up share 1/2", "catch-up share 2/2"]
    assert all(r.state.is_completed() for r in shares) and all(r.deployment_id for r in shares)
    assert all("fan-out" in r.tags for r in shares)
    # each share loaded its two files in one batch: the rows name that share's load-batch task run
    batches = {}
    for share in shares:
        deadline = time.monotonic() + 20
        while True:
            loads = [t for t in task_runs_of(share.id) if t.task_key.startswith("load_batch")]
            if (loads and all(t.state and t.state.is_final() for t in loads)) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [t.name for t in loads] == ["load a batch of 2 files"]
        batches[str(loads[0].id)] = share
    ledger = {
        (r.key, r.etag): (r.status, r.flow_run_id)
        for r in query(
            warehouse,
            "SELECT key, etag, status, flow_run_id FROM {schema}.load_ledger WHERE key LIKE :p",
            p=f"%/{folder}/%",
        )
    }
    assert set(ledger) == set(files)
    assert {status for status, _ in ledger.values()} == {"loaded"}
    assert {run for _, run in ledger.values()} == set(batches)


def test_each_file_of_a_share_is_checked_on_its_own_and_a_bad_one_is_refused_with_its_reason():
    good = {
        "key": "raw/x/immobilienscout24_berlin_20190113_15.zip",
        "etag": "a" * 32,
        "last_modified": "2019-01-13T15:01:00+00:00",
    }
    (checked,), refused = raw_objects([good], "raw/")
    assert refused == []
    assert (checked.key, checked.etag, checked.size) == (good["key"], "a" * 32, 0)
    assert checked.last_modified.isoformat() == good["last_modified"]
    bad = [
        good | {"key": "other/immobilienscout24_berlin_20190113_15.zip"},
        good | {"key": "raw/../secrets.zip"},
        good | {"etag": "not-an-etag"},
        {"key": good["key"], "etag": good["etag"]},
        good | {"last_modified": 12},
        good | {"size": "1e400"},
        "raw/x/a.zip",
        None,
    ]
    other = good | {"key": "raw/x/immobilienscout24_berlin_20190113_16.zip"}
    objects, refused = raw_objects([*bad[:4], other, *bad[4:]], "raw/")
    assert [o.key for o in objects] == [other["key"]]
    assert len(refused) == len(bad) and all(why for _, why in refused)
    assert "outside the raw prefix" in refused[0][1] and "relative path segment" in refused[1][1]
    with pytest.raises(InvalidSource):
        raw_objects({"key": good["key"]}, "raw/")


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
    from tests.unit.test_catch_up import _ledger

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
    from tests.unit.test_catch_up import _ledger

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
