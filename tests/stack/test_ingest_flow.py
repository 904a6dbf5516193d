"""The ingest flow end to end on real parts: moto server over HTTP, PostgreSQL, a Prefect server."""

from __future__ import annotations

import contextvars
import json
import threading
import time
import zipfile
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from berlin_rentals.synthetic import batch_name, derived_batch, read_sample_records, zip_lines
from flows.ingest import ingest_file
from tests.helpers import artifacts_of, flow_run_of, logs_of, query, scalar, table_counts, task_runs_of, upload

SAMPLE_NAME = "immobilienscout24_berlin_20190113_15.zip"


def run(settings, key, etag=None, force=False):
    state = ingest_file(settings.raw_bucket, key, etag, force, return_state=True)
    return state, state.result(raise_on_failure=False)


@pytest.fixture
def loaded_sample(settings, s3, sample_zip):
    key, etag = upload(s3, settings, SAMPLE_NAME, sample_zip.read_bytes())
    state, result = run(settings, key, etag)
    assert state.is_completed(), result
    return key, etag, state, result


def test_sample_lands_in_the_snowflake_with_the_known_answer(settings, loaded_sample):
    key, etag, _, result = loaded_sample
    assert result["status"] == "loaded" and result["fact_inserted"] == 11
    row = query(
        settings,
        """
        SELECT c.city, a.quarter, a.postcode, f.base_rent, f.number_of_rooms, f.living_space, f.balcony,
               f.publish_date, f.source_key, f.source_etag, f.batch_hour, f.flow_run_id
        FROM {schema}.fact_flats f
        JOIN {schema}.dim_address a ON a.address_id = f.address_id
        JOIN {schema}.dim_city c ON c.city_id = a.city_id
        JOIN {schema}.dim_agency g ON g.agency_id = f.agency_id
        WHERE f.listing_id = 56906504""",
    )[0]
    assert (row.city, row.quarter, row.postcode) == ("Berlin", "Mitte (Mitte)", "10115")
    assert row.base_rent == Decimal("1715.19") and row.number_of_rooms == Decimal("3.00")
    assert row.living_space == Decimal("115.00") and row.balcony is True
    assert row.publish_date == datetime(2017, 7, 14, 14, 20, 6, tzinfo=UTC)
    assert (row.source_key, row.source_etag) == (key, etag)
    assert row.batch_hour == datetime(2019, 1, 13, 15, tzinfo=UTC)
    assert row.flow_run_id == str(loaded_sample[2].state_details.flow_run_id)
    assert table_counts(settings) == {
        "dim_city": 1,
        "dim_district": 10,
        "dim_address": 11,
        "dim_agency": 10,
        "dim_agent": 10,
        "fact_flats": 11,
        "flat_snapshots": 11,
        "rejected_records": 0,
        "load_ledger": 1,
    }
    ledger = query(settings, "SELECT * FROM {schema}.load_ledger")[0]
    assert (ledger.key, ledger.etag, ledger.status, ledger.records_read, ledger.fact_inserted) == (
        key,
        etag,
        "loaded",
        11,
        11,
    )
    assert ledger.staged_prefix.endswith(f"etag={etag}/")


def test_lineage_artifacts_are_written_for_the_run(settings, loaded_sample):
    key, etag, state, _ = loaded_sample
    artifacts = _artifacts(state, 2)
    # One keyed lineage table (the staged objects folded in) and one keyed summary: nothing else.
    assert sorted((a.type, a.key.split("-")[0]) for a in artifacts) == [("markdown", "summary"), ("table", "lineage")]
    table = next(a for a in artifacts if a.type == "table")
    assert key in str(table.data) and etag in str(table.data) and '"records_read": 11' in str(table.data)
    assert f"etag={etag}/" in str(table.data) and "fact_flats 11" in str(table.data)
    summary = next(a for a in artifacts if a.type == "markdown")
    assert "**loaded**" in summary.data and key in summary.data
    assert "loaded in" in summary.data and "11 listings from 11 lines" in summary.data


def _artifacts(state, expected: int) -> list:
    deadline = time.monotonic() + 15
    while True:  # the API may index artifacts a moment after the run returns
        artifacts = artifacts_of(state.state_details.flow_run_id)
        if len(artifacts) >= expected or time.monotonic() > deadline:
            return artifacts
        time.sleep(0.5)


def test_the_same_etag_is_skipped(settings, loaded_sample):
    key, etag, _, _ = loaded_sample
    before = table_counts(settings)
    state, result = run(settings, key, etag)
    assert state.is_completed() and result["status"] == "skipped"
    assert table_counts(settings) == before


def test_force_replaces_the_files_rows_without_doubling(settings, loaded_sample):
    key, etag, _, _ = loaded_sample
    before = table_counts(settings)
    first_load = scalar(settings, "SELECT MAX(loaded_at) FROM {schema}.fact_flats")
    state, result = run(settings, key, etag, force=True)
    assert state.is_completed() and result["status"] == "loaded"
    assert result["fact_updated"] == 11 and result["fact_inserted"] == 0
    assert table_counts(settings) == before
    assert scalar(settings, "SELECT MIN(loaded_at) FROM {schema}.fact_flats") > first_load


def test_new_content_under_the_same_key_is_a_correction(settings, s3, loaded_sample):
    key, old_etag, _, _ = loaded_sample
    records = read_sample_records()
    changed = derived_batch(
        records,
        datetime(2019, 1, 13, 15, tzinfo=UTC),
        rent_factor=1.5,
        modified=datetime(2019, 1, 13, 14, 59, tzinfo=UTC),
    )
    _, new_etag = upload(s3, settings, SAMPLE_NAME, changed, folder=key.split("/")[-2])
    state, result = run(settings, key, new_etag)
    assert state.is_completed() and result["fact_updated"] == 11
    assert scalar(settings, "SELECT base_rent FROM {schema}.fact_flats WHERE listing_id = 56906504") == Decimal(
        "2572.78"
    )  # 1715.19 x 1.5, rounded half-even
    statuses = dict(query(settings, "SELECT etag, status FROM {schema}.load_ledger"))
    assert statuses == {old_etag: "superseded", new_etag: "loaded"}
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.flat_snapshots WHERE source_key = :k", k=key) == 11


def test_a_late_batch_adds_history_but_never_overwrites_newer_state(settings, s3):
    records = read_sample_records()
    later_hour, earlier_hour = datetime(2019, 1, 14, 9, tzinfo=UTC), datetime(2019, 1, 14, 8, tzinfo=UTC)
    newer = derived_batch(records, later_hour, rent_factor=1.1, modified=datetime(2019, 1, 14, 8, 30, tzinfo=UTC))
    older = derived_batch(records, earlier_hour, rent_factor=0.9, modified=datetime(2019, 1, 14, 7, 30, tzinfo=UTC))
    key_new, _ = upload(s3, settings, batch_name(later_hour) + ".zip", newer)
    key_old, _ = upload(s3, settings, batch_name(earlier_hour) + ".zip", older)
    assert run(settings, key_new)[1]["fact_inserted"] == 11
    late = run(settings, key_old)[1]
    assert (late["fact_inserted"], late["fact_updated"], late["fact_stale"]) == (0, 0, 11)
    assert scalar(settings, "SELECT base_rent FROM {schema}.fact_flats WHERE listing_id = 56906504") == Decimal(
        "1886.71"
    )
    history = query(
        settings,
        """SELECT batch_hour, base_rent FROM {schema}.flat_snapshots
                                  WHERE listing_id = 56906504 ORDER BY batch_hour""",
    )
    assert [(h, r) for h, r in history] == [(earlier_hour, Decimal("1543.67")), (later_hour, Decimal("1886.71"))]


def test_rejected_lines_are_kept_and_good_lines_of_the_file_load(settings, s3, sample_zip):
    with zipfile.ZipFile(sample_zip) as archive:
        good = archive.read(archive.namelist()[0]).splitlines()
    bad = [
        b'{"ok": true, "data": {"id": "1"',
        b'{"ok": false, "data": {"id": "5"}}',
        b'{"ok": true, "data": {"id": "77", "modification": "2019-01-12T11:32:11.975Z", "realEstate_baseRent": "viel"}}',
    ]
    body = zip_lines("mixed.json", good[:5] + bad + good[5:])
    key, etag = upload(s3, settings, "immobilienscout24_berlin_20190113_16.zip", body)
    state, result = run(settings, key, etag)
    assert state.is_completed() and result["fact_inserted"] == 11 and result["rejected"] == 3
    rows = query(
        settings,
        "SELECT source_key, source_etag, member, line_number, reason, raw_line FROM {schema}.rejected_records ORDER BY line_number",
    )
    assert [(r.member, r.line_number) for r in rows] == [("mixed.json", 6), ("mixed.json", 7), ("mixed.json", 8)]
    assert all(r.source_key == key and r.source_etag == etag for r in rows)
    assert [r.reason.split(": ")[1] for r in rows] == ["not_json", "not_ok", "invalid_value"]
    assert "realEstate_baseRent" in rows[2].reason
    assert [r.raw_line.encode() for r in rows] == bad
    assert scalar(settings, "SELECT rejected_count FROM {schema}.load_ledger") == 3
    # The run says so where a user looks: its state message, its tags, and a table of the rejected lines.
    run_record = flow_run_of(state)
    assert run_record.state.name == "Completed" and {"loaded", "rejects"} <= set(run_record.tags)
    assert "3 lines rejected" in run_record.state.message
    assert run_record.name == "ingest 20190113_16"
    rejects = next(a for a in _artifacts(state, 3) if a.key and a.key.startswith("rejects-"))
    shown = json.loads(rejects.data)
    assert [(r["member"], r["line"], r["reason"], r["value"]) for r in shown] == [
        ("mixed.json", 6, "not_json", None),
        ("mixed.json", 7, "not_ok", None),
        ("mixed.json", 8, "invalid_value", "viel"),
    ]
    assert "realEstate_baseRent" in shown[2]["detail"]


def test_a_file_that_is_not_a_batch_fails_clearly_and_is_parked(settings, s3):
    key, etag = upload(s3, settings, "immobilienscout24_berlin_20190113_17.zip", b"<html>not a zip</html>")
    state, _ = run(settings, key, etag)
    assert state.is_failed()
    ledger = query(settings, "SELECT status, attempts, error FROM {schema}.load_ledger")[0]
    assert ledger.status == "parked" and ledger.attempts == 1
    assert key in ledger.error and "not a zip archive" in ledger.error
    assert table_counts(settings)["fact_flats"] == 0
    # One line naming the file, what the ledger did and the fix; no traceback in the run's logs.
    run_record = flow_run_of(state)
    assert run_record.state.name == "Failed" and "parked" in run_record.tags
    assert key in state.message and "Parked after 1 attempt" in state.message and "force=true" in state.message
    logs = logs_of(state.state_details.flow_run_id)
    assert any(state.message == log.message for log in logs)
    assert not [log.message for log in logs if "Traceback" in log.message]


def test_the_transform_is_cached_by_etag(settings, s3, loaded_sample, sample_zip):
    # The same bytes under another key: the ledger has never seen this key, but the content is known.
    key, etag = upload(s3, settings, SAMPLE_NAME, sample_zip.read_bytes())
    assert etag == loaded_sample[1]
    state, result = run(settings, key, etag)
    assert result["status"] == "loaded"
    transform_runs = [t for t in task_runs_of(state.state_details.flow_run_id) if t.name.startswith("transform")]
    assert [t.state.name for t in transform_runs] == ["Cached"]
    # Both keys' snapshots exist; the fact rows keep the first key (same modification, other object).
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.flat_snapshots") == 22
    assert result["fact_stale"] == 11


def test_two_loads_of_one_etag_at_once_load_once(settings, s3, sample_zip):
    """The database decides: the second claim waits on the first transaction, then sees 'loaded'."""
    key, etag = upload(s3, settings, SAMPLE_NAME, sample_zip.read_bytes())
    results, barrier = [], threading.Barrier(4)

    def go():
        barrier.wait()
        results.append(run(settings, key, etag)[1]["status"])

    # Prefect's settings live in context variables: each thread runs in a copy of this context.
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(go,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == ["loaded", "skipped", "skipped", "skipped"]
    counts = table_counts(settings)
    assert (counts["fact_flats"], counts["flat_snapshots"], counts["load_ledger"]) == (11, 11, 1)


def test_a_parked_file_is_skipped_until_released_with_force(settings, s3, sample_zip):
    from berlin_rentals.source import Version
    from berlin_rentals.warehouse.attempts import AttemptPolicy, Failure, attempt_id, record_failure
    from berlin_rentals.warehouse.engines import target_for
    from tasks.common import warehouse_engine

    key, etag = upload(s3, settings, SAMPLE_NAME, sample_zip.read_bytes())
    engine, target = (
        warehouse_engine(settings.warehouse_url),
        target_for(settings.warehouse_url, settings.warehouse_schema),
    )
    # Three transient failures in a row (say, the warehouse was down for hours): parked after the third.
    outcomes = [
        record_failure(
            engine,
            target,
            Version(settings.raw_bucket, key, etag),
            Failure("connection refused"),
            run_id=attempt_id(None),  # outside a run: each call an attempt of its own
            policy=AttemptPolicy(3),
        )
        for _ in range(3)
    ]
    assert outcomes == [("failed", 1), ("failed", 2), ("parked", 3)]
    state, result = run(settings, key, etag)
    assert state.is_completed() and (result["status"], result["ledger"]) == ("skipped", "parked")
    state, result = run(settings, key, etag, force=True)
    assert state.is_completed() and result["status"] == "loaded" and result["fact_inserted"] == 11
    assert query(settings, "SELECT status, attempts FROM {schema}.load_ledger")[0] == ("loaded", 3)


def test_a_key_outside_the_raw_prefix_is_refused_and_never_reaches_the_ledger(settings, s3):
    s3.put_object(Bucket=settings.raw_bucket, Key="elsewhere/immobilienscout24_berlin_20190113_15.zip", Body=b"x")
    state = ingest_file(
        settings.raw_bucket,
        "elsewhere/immobilienscout24_berlin_20190113_15.zip",
        "793fb4ae6d07bb5b55ea181ad1fed13a",
        return_state=True,
    )
    assert state.is_failed() and "outside the raw prefix" in str(state.result(raise_on_failure=False))
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.load_ledger") == 0
