"""A backfill larger than ETL_FANOUT_FILES goes out as runs of the catch-up deployment over a share of the files
each, on the work pool, which the catch-up waits for and reports on: here two runs on the local worker, through
the real Prefect server (prefect.yaml deployed), loading into the stack's own schema as the worker's
environment says. A share is the catch-up over a given list: checked file by file, keyed by its files."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest

from tests.helpers import child_flow_runs_of, query, task_runs_of
from tests.stack.test_catch_up import _day, _run, _upload_hour


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
