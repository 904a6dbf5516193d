"""Attempts are counted before the heavy work, once per run, and a configuration error is not the file's fault."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from berlin_rentals.synthetic import batch_name
from flows.ingest import ingest_file
from tests.faults import fresh_batch
from tests.helpers import mark_runs_of_key_crashed, query, task_runs_of, upload

REPO = Path(__file__).resolve().parents[2]


def ledger(settings, key):
    return [
        tuple(r) for r in query(settings, "SELECT status, attempts FROM {schema}.load_ledger WHERE key = :k", k=key)
    ]


def record(settings, key, etag, run_id, *, terminal=False, error="OperationalError: connection refused"):
    from berlin_rentals.source import Version
    from berlin_rentals.warehouse.attempts import AttemptPolicy, Failure, attempt_id, record_failure
    from berlin_rentals.warehouse.engines import target_for
    from tasks.common import warehouse_engine

    return record_failure(
        warehouse_engine(settings.warehouse_url),
        target_for(settings.warehouse_url, settings.warehouse_schema),
        Version(settings.raw_bucket, key, etag),
        Failure(error, terminal),
        run_id=attempt_id(run_id),
        policy=AttemptPolicy(settings.max_attempts),
    )


def test_a_failure_recorded_twice_by_one_run_counts_one_attempt(settings):
    """The record-failure task retries; a retry after a commit whose acknowledgement was lost repeats it."""
    key, etag = "raw/x/immobilienscout24_berlin_20190113_15.zip", "a" * 32
    assert record(settings, key, etag, "run-1") == ("failed", 1)
    assert record(settings, key, etag, "run-1") == ("failed", 1)
    assert ledger(settings, key) == [("failed", 1)]
    assert record(settings, key, etag, "run-2") == ("failed", 2)
    assert record(settings, key, etag, "run-3") == ("parked", 3)


def _transform_running(flow_run_name_key: str) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["ingest-file"])), limit=50)
    for run in runs:
        if run.parameters.get("key") != flow_run_name_key:
            continue
        for task_run in task_runs_of(run.id):
            if task_run.name.startswith("transform") and task_run.state and task_run.state.is_running():
                return True
    return False


def test_a_process_killed_during_the_transform_counts_one_attempt(settings, s3, tmp_path, monkeypatch):
    hour = datetime(2041, 3, 1, 5, tzinfo=UTC)
    key, etag = upload(s3, settings, batch_name(hour) + ".zip", fresh_batch(hour, first_id=91_000_000, listings=30000))
    env = dict(os.environ, PYTHONPATH=str(REPO), PREFECT_LOCAL_STORAGE_PATH=str(tmp_path / "results"))
    log = tmp_path / "ingest.log"
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "flows.ingest", settings.raw_bucket, key, "--etag", etag],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while not _transform_running(key):
            assert child.poll() is None, f"the ingest ended before its transform was seen: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "never saw the transform running"
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)  # as the kernel's OOM killer does: no handler runs
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        mark_runs_of_key_crashed(key)
    staged = s3.list_objects_v2(Bucket=settings.staging_bucket, Prefix=f"{settings.staging_prefix}v")
    assert not [o for o in staged.get("Contents", []) if f"etag={etag}/" in o["Key"]], "killed after the transform"

    attempts = query(settings, "SELECT outcome FROM {schema}.load_attempts WHERE key = :k AND etag = :e", k=key, e=etag)
    assert [a.outcome for a in attempts] == [None]  # one attempt, never finished
    # Out of attempts (here after one): the next run parks the file instead of dying on it again. An
    # unfinished attempt counts once it is older than ETL_ATTEMPT_STALE_SECONDS (a younger one may be a
    # run still at work): the hourly catch-up finds the killed one an hour old; here it is at once.
    monkeypatch.setenv("ETL_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("ETL_ATTEMPT_STALE_SECONDS", "0")
    state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    assert state.is_failed()
    assert ledger(settings, key) == [("parked", 1)]
    assert "Parked after 1 attempt" in state.message and "1 of them ended without a word" in state.message
    # Released with force, it gets its attempts again (and here, loads).
    monkeypatch.setenv("ETL_MAX_ATTEMPTS", "3")
    state = ingest_file(settings.raw_bucket, key, etag, True, return_state=True)
    assert state.is_completed() and state.result()["status"] == "loaded"


def test_a_configuration_error_fails_the_run_but_is_not_counted_and_parks_nothing(
    settings, s3, sample_zip, monkeypatch
):
    key, etag = upload(s3, settings, "immobilienscout24_berlin_20190113_15.zip", sample_zip.read_bytes())
    monkeypatch.setenv("ETL_MASK_PERSONAL_DATA", "1")
    monkeypatch.delenv("ETL_MASK_SALT", raising=False)
    for _ in range(3):  # the outage lasts: every run of it fails loudly
        state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
        assert state.is_failed()
        assert "ETL_MASK_SALT" in state.message and "Nothing was recorded in the ledger" in state.message
    assert ledger(settings, key) == []  # not parked, no attempt counted
    # The setting fixed, the file loads without a release (no force).
    monkeypatch.setenv("ETL_MASK_SALT", "c5a19e07d3b64f28e1a90c7d5b3f8e62")
    state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    assert state.is_completed() and state.result()["status"] == "loaded"
    assert ledger(settings, key) == [("loaded", 0)]


def test_the_release_flow_releases_parked_files_in_bulk_with_their_attempts_back(settings, capsys):
    from flows.release import main

    since = datetime.now(UTC) - timedelta(minutes=5)
    a, b, c = (f"raw/r/immobilienscout24_berlin_20190113_{h}.zip" for h in (10, 11, 12))
    etag = "b" * 32
    for n in (1, 2, 3):  # parked after three attempts of an S3 outage
        record(settings, a, etag, f"run-a{n}", error="ClientError: ServiceUnavailable")
    record(settings, b, etag, "run-b1", terminal=True, error="BadArchive: not a zip archive")
    assert ledger(settings, a) == [("parked", 3)] and ledger(settings, b) == [("parked", 1)]
    record(settings, c, etag, "run-c1")

    assert main(["--parked", "--since", since.isoformat(), "--error", "ServiceUnavailable", "--dry-run"]) == 0
    assert a in capsys.readouterr().out and ledger(settings, a) == [("parked", 3)]  # a dry run changes nothing
    assert main(["--parked", "--since", since.isoformat(), "--error", "ServiceUnavailable"]) == 0
    out = capsys.readouterr().out
    assert "released 1" in out and a in out and b not in out
    assert ledger(settings, a) == [("failed", 0)] and ledger(settings, b) == [("parked", 1)]
    assert ledger(settings, c) == [("failed", 1)]
    # The full number of attempts again: parked only after three more.
    assert [record(settings, a, etag, f"run-a{n}") for n in (4, 5, 6)] == [("failed", 1), ("failed", 2), ("parked", 3)]
    # Parked before --since: left alone.
    assert main(["--parked", "--since", (datetime.now(UTC) + timedelta(minutes=1)).isoformat()]) == 0
    assert "released 0" in capsys.readouterr().out and ledger(settings, b) == [("parked", 1)]


def test_s3_access_denied_fails_the_run_loudly_and_leaves_the_file_to_load_once_fixed(
    settings, s3, stack_env, monkeypatch
):
    from tests.faults import HttpProxy, Request, s3_error

    hour = datetime(2041, 3, 1, 7, tzinfo=UTC)
    key, etag = upload(s3, settings, batch_name(hour) + ".zip", fresh_batch(hour, first_id=91_100_000, listings=20))

    def denied(request: Request):  # the worker's role lost s3:GetObject on the raw bucket
        if request.method == "GET" and request.path.split("?")[0].endswith(key):
            return s3_error(403, "AccessDenied", "Access Denied")
        return None

    proxy = HttpProxy(stack_env["AWS_ENDPOINT_URL"], denied)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    try:
        state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    finally:
        proxy.close()
    assert state.is_failed() and "AccessDenied" in state.message
    assert "Nothing was recorded in the ledger" in state.message and "correct the setting" in state.message
    assert ledger(settings, key) == []
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack_env["AWS_ENDPOINT_URL"])
    state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    assert state.is_completed() and state.result()["status"] == "loaded"


def test_runs_still_at_work_on_a_version_do_not_use_up_its_attempts(settings):
    """Unfinished attempts count only once they are older than ETL_ATTEMPT_STALE_SECONDS: four runs of one
    version at once (duplicate events) must not park it while three of them are loading it."""
    from berlin_rentals.source import Version
    from berlin_rentals.warehouse.attempts import AttemptPolicy, begin_attempt
    from berlin_rentals.warehouse.engines import target_for
    from tasks.common import warehouse_engine

    engine = warehouse_engine(settings.warehouse_url)
    target = target_for(settings.warehouse_url, settings.warehouse_schema)
    key, etag = "raw/c/immobilienscout24_berlin_20190113_16.zip", "c" * 32

    def begin(run_id, stale_seconds=1800):
        return begin_attempt(
            engine, target, Version(settings.raw_bucket, key, etag), run_id, AttemptPolicy(3, stale_seconds)
        )

    assert [begin(f"run-{n}") for n in (1, 2, 3, 4)] == [None] * 4
    assert ledger(settings, key) == []
    status, attempts, error = begin("run-5", stale_seconds=0)  # now the four are taken for dead
    assert (status, attempts) == ("parked", 4) and "4 of them ended without a word" in error
    assert ledger(settings, key) == [("parked", 4)]
