"""Loads queue for a slot of Prefect's global concurrency limit `warehouse-load`, not on the warehouse.

On the real local stack: the limit `make up` creates (its size ETL_LOAD_CONCURRENCY), the load task run by
Prefect in threads, PostgreSQL's pg_stat_activity showing the load sessions (`berlin-rentals load …`).
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.task_runners import ThreadPoolTaskRunner

from berlin_rentals.archive import iter_lines
from berlin_rentals.config import LoadLimitSettings
from berlin_rentals.source import SourceObject
from berlin_rentals.staging import StagedBatch, staged_prefix
from berlin_rentals.synthetic import read_sample_records, with_listing_id, zip_records
from berlin_rentals.transform import transform_lines
from tasks.load import LOAD_LIMIT, load
from tests.helpers import scalar

LOADS = 6


def _limit():
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(LOAD_LIMIT)


def _batches(settings, count: int):
    """`count` files of distinct listings (they would not wait on each other's rows), each its own version."""
    records = read_sample_records()
    for i in range(count):
        body = zip_records("batch.json", [with_listing_id(r, 10_000_000 * (i + 1) + n) for n, r in enumerate(records)])
        key = f"raw/immobilienscout24_berlin_20190114_{i:02d}.zip"
        etag = uuid.uuid4().hex
        batch = transform_lines(iter_lines(body, key))
        source = SourceObject(settings.raw_bucket, key, etag, len(body), datetime.now(UTC))
        staged = StagedBatch(
            settings.staging_bucket,
            staged_prefix(settings.staging_prefix, etag),
            {n: batch.rows(n) for n in batch.tables},
            data=dict(batch.tables),
        )
        yield source, staged, batch.stats


@pytest.mark.slow
def test_loads_started_at_once_hold_at_most_the_limits_size_of_warehouse_sessions(deployed_stack, settings):
    limit = _limit()  # created by `make up` (LocalStack._deploy), at ETL_LOAD_CONCURRENCY's default
    assert limit.limit == LoadLimitSettings.from_env().load_concurrency == 2 and limit.active
    # A load that an earlier test killed mid-transaction (test_faults) holds its slot until its lease
    # expires (300 s): start from no slot taken, so that this test counts its own loads only.
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(LOAD_LIMIT, GlobalConcurrencyLimitUpdate(active_slots=0))
    batches = list(_batches(settings, LOADS))

    engine = sa.create_engine(settings.warehouse_url)
    seen_sessions, seen_slots, stop = [], [], threading.Event()

    def watch() -> None:
        with engine.connect() as conn:
            while not stop.is_set():
                seen_sessions.append(
                    conn.execute(
                        sa.text(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE application_name LIKE 'berlin-rentals load %' AND state <> 'idle'"
                        )
                    ).scalar()
                )
                conn.rollback()
                time.sleep(0.005)

    def watch_slots() -> None:
        while not stop.is_set():
            seen_slots.append(_limit().active_slots)
            time.sleep(0.05)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=LOADS))
    def loads_at_once():
        futures = [load.submit(settings, s, st, stats, False, f"run-{i}") for i, (s, st, stats) in enumerate(batches)]
        return [f.result() for f in futures]

    watchers = [threading.Thread(target=watch), threading.Thread(target=watch_slots)]
    for watcher in watchers:
        watcher.start()
    started = time.monotonic()
    try:
        reports = loads_at_once()
    finally:
        stop.set()
        for watcher in watchers:
            watcher.join()
        engine.dispose()
    elapsed = time.monotonic() - started

    assert [r.status for r in reports] == ["loaded"] * LOADS
    assert (
        scalar(settings, f"SELECT count(*) FROM {settings.warehouse_schema}.load_ledger WHERE status = 'loaded'")
        == LOADS
    )
    print(
        f"{LOADS} loads in {elapsed:.1f} s; sessions seen at once: max {max(seen_sessions)}; slots: max {max(seen_slots)}"
    )
    assert 1 <= max(seen_sessions) <= limit.limit, f"load sessions at once: {sorted(set(seen_sessions))}"
    assert max(seen_slots) <= limit.limit
    assert _limit().active_slots == 0, "every slot is released"


@pytest.mark.slow
def test_without_the_limit_a_load_still_loads_and_says_how_to_create_it(deployed_stack, settings, caplog):
    from deployments.concurrency import ensure_load_limit

    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(LOAD_LIMIT)
    try:
        [(source, staged, stats)] = _batches(settings, 1)
        with caplog.at_level("WARNING"):
            report = load.fn(settings, source, staged, stats, False, "run-x")
        assert report.status == "loaded"
        assert f"prefect gcl create {LOAD_LIMIT}" in caplog.text
    finally:
        ensure_load_limit(LoadLimitSettings.from_env().load_concurrency)
    assert _limit().limit == LoadLimitSettings.from_env().load_concurrency
