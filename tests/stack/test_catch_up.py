"""The catch-up flow on the real stack; its planning (pure) is in tests/unit/test_catch_up.py."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from berlin_rentals.catch_up import (
    hours_in,
)
from berlin_rentals.ingest_result import IngestFailed
from berlin_rentals.synthetic import batch_name, derived_batch, read_sample_records

# --- the flow on the real stack ---------------------------------------------------------------------


def _day() -> datetime:
    """A day of its own: the raw bucket is shared by every test (and its listing with it)."""
    return datetime(2031, 1, 1, tzinfo=UTC) + timedelta(days=uuid.uuid4().int % 360)


def _upload_hour(s3, settings, folder: str, hour: datetime, seed: int) -> tuple[str, str]:
    from tests.helpers import upload

    body = derived_batch(
        read_sample_records(), hour, rent_factor=1 + seed / 10, modified=hour, seed=seed, new_listings=seed
    )
    return upload(s3, settings, batch_name(hour) + ".zip", body, folder=folder)


def _run(**parameters):
    from flows.catch_up import catch_up

    state = catch_up(return_state=True, **parameters)
    assert state.is_completed(), state
    return state.state_details.flow_run_id, state.result()


def _ledger(settings) -> dict[str, tuple[str, int]]:
    from tests.helpers import query

    return {
        r.key: (r.status, r.attempts) for r in query(settings, "SELECT key, status, attempts FROM {schema}.load_ledger")
    }


def _artifacts(flow_run_id, count: int) -> list:
    from tests.helpers import artifacts_of

    deadline = time.monotonic() + 15
    while True:  # the API may index artifacts a moment after the run returns
        artifacts = artifacts_of(flow_run_id)
        if len(artifacts) >= count or time.monotonic() > deadline:
            return artifacts
        time.sleep(0.5)


def test_catch_up_loads_what_was_missed_and_reports_the_gap(settings, s3):
    from flows.ingest import ingest_file

    folder, day = uuid.uuid4().hex[:8], _day()
    files = {h: _upload_hour(s3, settings, folder, day + timedelta(hours=h), seed=h) for h in (0, 1, 3)}  # 2: none
    assert ingest_file(settings.raw_bucket, *files[0])["status"] == "loaded"  # as if its event had come
    window = dict(since=day, until=day + timedelta(hours=4), prefix=f"{settings.raw_prefix}{folder}/")

    run_id, report = _run(max_concurrency=2, **window)
    assert (report["found"], report["loaded_now"], report["already_loaded"], report["failed_now"]) == (3, 2, 1, 0)
    assert report["parked"] == [] and report["gaps"] == [(day + timedelta(hours=2)).isoformat()]
    assert _ledger(settings) == {key: ("loaded", 0) for key, _ in files.values()}
    from tests.helpers import scalar

    assert (
        scalar(settings, "SELECT COUNT(*) FROM {schema}.flat_snapshots") == 11 + 12 + 14
    )  # 11 sample listings, plus `seed` new ones per file

    artifacts = {a.key: a for a in _artifacts(run_id, 2)}
    table = {row["figure"]: row["files"] for row in _table_rows(artifacts["catch-up-report"].data)}
    assert (table["files found"], table["loaded now"], table["already loaded"], table["failed now"]) == (3, 2, 1, 0)
    gaps_md = artifacts["catch-up-gaps"].data
    assert f"- {day + timedelta(hours=2):%Y-%m-%d %H:00}\n" in gaps_md
    assert f"{day + timedelta(hours=2):%Y-%m-%d %H:00}  · 0" in gaps_md  # the chart's empty hour

    _, again = _run(**window)
    assert (again["found"], again["loaded_now"], again["already_loaded"], again["failed_now"]) == (3, 0, 3, 0)
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.flat_snapshots") == 37


def test_a_file_that_cannot_be_read_is_parked_and_not_retried_while_the_others_load(settings, s3):
    from tests.helpers import upload

    folder, day = uuid.uuid4().hex[:8], _day()
    good = [_upload_hour(s3, settings, folder, day + timedelta(hours=h), seed=h) for h in (0, 1)]
    poison, _ = upload(
        s3, settings, batch_name(day + timedelta(hours=1)) + "_retry.zip", b"<html>not a zip</html>", folder=folder
    )
    window = dict(since=day, until=day + timedelta(hours=2), prefix=f"{settings.raw_prefix}{folder}/")

    _, report = _run(max_concurrency=3, **window)
    assert (report["found"], report["loaded_now"], report["already_loaded"], report["failed_now"]) == (3, 2, 0, 1)
    assert report["failed"] == [poison] and report["parked"] == [poison] and report["gaps"] == []
    ledger = _ledger(settings)
    assert ledger == {good[0][0]: ("loaded", 0), good[1][0]: ("loaded", 0), poison: ("parked", 1)}

    run_id, again = _run(**window)
    assert (again["loaded_now"], again["already_loaded"], again["failed_now"], again["parked"]) == (0, 2, 0, [poison])
    assert _ledger(settings) == ledger  # a parked file waits for someone to release it: no second attempt
    gaps_md = {a.key: a for a in _artifacts(run_id, 2)}["catch-up-gaps"].data
    assert f"`{poison}`" in gaps_md and "not a zip archive" in gaps_md


def test_each_file_is_one_task_run_of_the_catch_up_and_one_row_of_its_lineage_table(settings, s3):
    """What the UI shows of a catch-up: a task run per file (not a subflow with a task run per step) that
    stages it, a task run per batch that loads the staged files, and one table whose rows say, per file,
    which version was read, what became of it, and in which batch."""
    from tests.helpers import child_flow_runs_of, task_runs_of, upload

    folder, day = uuid.uuid4().hex[:8], _day()
    good = [_upload_hour(s3, settings, folder, day + timedelta(hours=h), seed=h) for h in range(4)]
    poison = upload(s3, settings, batch_name(day + timedelta(hours=3)) + "_bad.zip", b"not a zip", folder=folder)
    window = dict(since=day, until=day + timedelta(hours=4), prefix=f"{settings.raw_prefix}{folder}/")

    run_id, report = _run(max_concurrency=2, **window)
    assert (report["found"], report["loaded_now"], report["failed_now"]) == (5, 4, 1)

    files = 5
    deadline = time.monotonic() + 30
    while True:  # task runs reach the API as events, recorded a moment later
        runs = task_runs_of(run_id)
        per_file = [r for r in runs if r.task_key.startswith("stage_object")]
        if (
            len(per_file) == files and all(r.state and r.state.is_final() for r in per_file)
        ) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(r.name for r in per_file) == sorted(f"stage {key}" for key, _ in good + [poison])
    batches = [r for r in runs if r.task_key.startswith("load_batch")]
    assert [r.name for r in batches] == ["load a batch of 4 files"]  # the poison file failed before it
    # the attempts of a batch's files counted in one transaction, before they are staged
    assert [r.name for r in runs if r.task_key.startswith("begin_batch_attempts")] == ["count the attempts of 5 files"]
    # and each listed version confirmed (HEAD) before that, in one task run too: a replaced one is never counted
    assert [r.name for r in runs if r.task_key.startswith("confirm_versions")] == ["confirm 5 listed versions"]
    # Each file's steps are task runs nested in its stage run (the ingest-file flow's tasks, their retries)
    stages = {r.id for r in per_file}
    nested = [r for r in runs if r.task_inputs.get("__parents__")]
    assert nested and all({p.id for p in r.task_inputs["__parents__"]} <= stages for r in nested)
    good_stage = next(r.id for r in per_file if r.name == f"stage {good[0][0]}")
    steps = sorted(
        r.task_key.split("-")[0] for r in nested if {p.id for p in r.task_inputs["__parents__"]} == {good_stage}
    )
    assert steps == ["extract", "inspect_source", "transform_stage"], steps
    # list-raw-objects (with the ledger rows of each page), read-ledger after, publish-report: fixed
    top = [r for r in runs if not r.task_inputs.get("__parents__")]
    assert len(top) == files + 1 + 1 + 1 + 3, sorted(r.name for r in top)
    assert child_flow_runs_of(run_id) == []

    artifacts = {a.key: a for a in _artifacts(run_id, 3)}
    rows = _table_rows(artifacts["catch-up-lineage"].data)
    assert sorted((r["key"], r["etag"], r["status"]) for r in rows) == sorted(
        [(key, etag, "loaded") for key, etag in good] + [(poison[0], poison[1], "failed (parked)")]
    )
    loaded = next(r for r in rows if r["key"] == good[0][0])
    # the files load side by side, in any order: each listing is new, newer or older than what is there
    assert loaded["records_read"] == 11 and loaded["flat_snapshots_written"] == 11
    assert loaded["fact_flats_inserted"] + loaded["fact_flats_updated"] + loaded["fact_flats_stale_kept_older"] == 11
    # where the file's time went: each step it ran, in order, with its seconds
    steps = [part.split() for part in loaded["steps"].split(", ")]
    assert [name for name, _ in steps] == [
        "inspect-source",
        "extract",
        "transform-stage",
    ]  # nothing of the warehouse: the ledger was read with the listing, the attempt counted with the batch's
    assert all(0 < float(seconds) <= loaded["seconds"] for _, seconds in steps)
    assert loaded["staged_prefix"].endswith(f"etag={good[0][1]}/")
    assert "not a zip" in next(r for r in rows if r["key"] == poison[0])["error"]
    # the rows the catch-up loaded name the task run that loaded them: the batch's, in its lineage row too
    from tests.helpers import query

    assert {r["batch"] for r in rows if r["status"] == "loaded"} == {str(batches[0].id)}
    assert {row.flow_run_id for row in query(settings, "SELECT DISTINCT flow_run_id FROM {schema}.fact_flats")} == {
        str(batches[0].id)
    }


def test_a_late_file_for_an_old_hour_is_found_by_its_upload_time(settings, s3):
    """A file for an hour three days ago, uploaded now while its event is lost: the scheduled run (the
    default window, the last 24 hours) finds it by its upload time; its hour is no gap of this window."""
    folder = uuid.uuid4().hex[:8]
    old_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=72)
    key, etag = _upload_hour(s3, settings, folder, old_hour, seed=1)

    _, report = _run(max_concurrency=1, prefix=f"{settings.raw_prefix}{folder}/")
    assert (report["found"], report["loaded_now"], report["failed_now"]) == (1, 1, 0), report
    assert _ledger(settings)[key] == ("loaded", 0)
    since, until = datetime.fromisoformat(report["since"]), datetime.fromisoformat(report["until"])
    assert report["gaps"] == [hour.isoformat() for hour in hours_in(since, until)]  # the window's hours only
    assert old_hour.isoformat() not in report["gaps"]


def test_all_files_reconciles_every_object_whatever_its_hour_or_upload(settings, s3):
    folder, day = uuid.uuid4().hex[:8], _day()
    key, etag = _upload_hour(s3, settings, folder, day, seed=2)
    elsewhere = dict(since=day + timedelta(days=30), until=day + timedelta(days=30, hours=2))
    prefix = f"{settings.raw_prefix}{folder}/"

    _, report = _run(prefix=prefix, **elsewhere)
    assert report["found"] == 0  # neither its hour nor its upload is in that window
    _, report = _run(prefix=prefix, all_files=True, **elsewhere)
    assert (report["found"], report["loaded_now"], report["already_loaded"]) == (1, 1, 0), report
    assert report["gaps"] == [(elsewhere["since"] + timedelta(hours=h)).isoformat() for h in range(2)]
    assert _ledger(settings)[key] == ("loaded", 0)
    _, again = _run(prefix=prefix, all_files=True, **elsewhere)
    assert (again["found"], again["loaded_now"], again["already_loaded"]) == (1, 0, 1)


def test_an_empty_window_reports_every_hour_as_a_gap(settings):
    day = _day()
    _, report = _run(since=day, until=day + timedelta(hours=3), prefix=f"{settings.raw_prefix}{uuid.uuid4().hex[:8]}/")
    assert (report["found"], report["loaded_now"], report["already_loaded"], report["failed_now"]) == (0, 0, 0, 0)
    assert report["gaps"] == [(day + timedelta(hours=h)).isoformat() for h in range(3)]


def test_a_prefix_outside_the_raw_prefix_is_refused(settings):
    from flows.catch_up import catch_up

    state = catch_up(prefix="elsewhere/", return_state=True)
    assert state.is_failed() and "outside the raw prefix" in str(state.result(raise_on_failure=False))


def _table_rows(data) -> list[dict]:
    import json

    return json.loads(data) if isinstance(data, str) else data


def test_a_batch_that_fails_to_load_is_split_until_the_failing_file_is_alone_and_parked(settings, s3):
    """Four staged files, one of whose staged Parquet is corrupt after staging (what a load cannot get past):
    the batch fails, its halves are tried, the good files load in batches of their own, and the bad one runs
    the single-file pipeline, which records the failure and parks it (a terminal error)."""
    from prefect import flow

    from berlin_rentals.ingest_result import STAGED
    from flows.batches import load_in_batches
    from flows.ingest import run_ingest

    folder, day = uuid.uuid4().hex[:8], _day()
    files = [_upload_hour(s3, settings, folder, day + timedelta(hours=h), seed=h) for h in range(4)]

    @flow(name="split-batch-test")
    def stage_then_load():
        staged = [
            run_ingest(
                settings, settings.raw_bucket, key, etag, False, f"attempt-{uuid.uuid4().hex}", until_staged=True
            )
            for key, etag in files
        ]
        assert [r.status for r in staged] == [STAGED] * 4
        bad = staged[2].staged
        s3.put_object(Bucket=bad.bucket, Key=bad.table_key("fact_flats"), Body=b"not parquet")
        return load_in_batches(settings, staged)

    outcomes = stage_then_load()
    by_key = {(o.result.key if isinstance(o, IngestFailed) else o.key): o for o in outcomes}
    bad_key = files[2][0]
    failed = by_key[bad_key]
    assert isinstance(failed, IngestFailed) and failed.result.ledger == "parked", failed
    loaded = [by_key[key] for key, _ in files if key != bad_key]
    assert all(o.status == "loaded" for o in loaded)
    # [0, 1, 2, 3] failed; [0, 1] loaded together; [2, 3] failed; [2] failed alone; [3] loaded alone
    assert loaded[0].batch == loaded[1].batch != loaded[2].batch
    assert _ledger(settings) == {
        key: ("parked" if key == bad_key else "loaded", 1 if key == bad_key else 0) for key, _ in files
    }
