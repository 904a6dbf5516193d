"""Faults injected for real (processes, sockets, HTTP), and the warehouse measured against a clean load.

Each test ends by comparing the warehouse with a clean single load of the same files into a schema of
its own: rows lost and rows doubled (the goal is zero) are printed (`pytest -s`) and asserted.
Nothing of the project's own code is mocked: the worker is SIGKILLed, PostgreSQL connections are cut
in a TCP proxy or terminated by the server, the S3 endpoint answers 503 or loses the object behind an
HTTP proxy, and the SQS bridge is SIGKILLed while its DeleteMessage is held in a proxy (that one, on the event path, in
tests/e2e/test_faults.py).
"""

from __future__ import annotations

import contextvars
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
)
from prefect.client.schemas.sorting import FlowRunSort

from berlin_rentals.config import Settings
from berlin_rentals.synthetic import batch_name
from berlin_rentals.warehouse.ddl import create_warehouse
from flows.ingest import ingest_file
from tasks.common import warehouse_engine
from tests.faults import (
    HttpProxy,
    Request,
    TcpProxy,
    dimension_ids,
    fresh_batch,
    lost_and_doubled,
    report,
    s3_error,
    warehouse_rows,
)
from tests.helpers import (
    artifacts_of,
    mark_runs_of_key_crashed,
    query,
    scalar,
    task_runs_of,
    upload,
)

REPO = Path(__file__).resolve().parents[2]


# ---- shared pieces -------------------------------------------------------------------------------


def hour_of(n: int) -> datetime:
    """Batch hours of this module (2040 onwards): no other test's files share them."""
    return datetime(2040, 1, 1, tzinfo=UTC) + timedelta(hours=n)


def first_id(n: int) -> int:
    """Listing ids of this module's file n: 80,000,000 + n * 100,000 onwards, shared with no other file."""
    return 80_000_000 + n * 100_000


def clean_load(stack_env: dict[str, str], keys: list[tuple[str, str]], *, shared: bool = False) -> dict:
    """The rows a clean single load of these files gives, in a throw-away schema of its own."""
    schema = f"r_{uuid.uuid4().hex[:10]}"
    url = stack_env["WAREHOUSE_URL"]
    create_warehouse(url, schema)
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("WAREHOUSE_SCHEMA", schema)
            env.setenv("WAREHOUSE_URL", url)
            env.setenv("AWS_ENDPOINT_URL", stack_env["AWS_ENDPOINT_URL"])
            for key, etag in keys:
                state = ingest_file(stack_env["ETL_RAW_BUCKET"], key, etag, return_state=True)
                assert state.is_completed() and state.result()["status"] == "loaded", state
        rows = warehouse_rows(warehouse_engine(url), schema)
    finally:
        with warehouse_engine(url).begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    return dimension_ids(rows) if shared else rows


def measure(name: str, expected: dict, settings: Settings, keys: list[str] | None = None) -> tuple[int, int]:
    got = warehouse_rows(warehouse_engine(settings.warehouse_url), settings.warehouse_schema, keys)
    return report(name, lost_and_doubled(expected, got), expected)


def loader_backend(settings: Settings, schema: str, phase: tuple[str, ...]) -> sa.Row | None:
    """The backend of an open load transaction in `schema` while it runs a statement starting with `phase`
    (COPY into the staging tables, MERGE into the warehouse tables, ...).

    The load's transaction is told by its ledger claim: the claim's INSERT holds a RowExclusiveLock on
    load_ledger until the transaction ends.
    """
    rows = query(
        settings,
        """
        SELECT a.pid, a.state, left(ltrim(a.query), 60) AS query
        FROM pg_locks l
        JOIN pg_class c ON c.oid = l.relation
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE n.nspname = :schema AND c.relname = 'load_ledger' AND l.mode = 'RowExclusiveLock'
          AND l.granted AND l.pid <> pg_backend_pid()""",
        schema=schema,
    )
    for row in rows:
        if row.state == "active" and row.query.upper().startswith(phase):
            return row
    return None


def backend_alive(settings: Settings, pid: int) -> bool:
    return bool(query(settings, "SELECT 1 FROM pg_stat_activity WHERE pid = :pid", pid=pid))


class WhenLoading(threading.Thread):
    """Watch PostgreSQL from outside; once a load transaction of `schema` runs `phase`, run `action(backend)` once."""

    def __init__(self, settings: Settings, schema: str, phase: tuple[str, ...], action, timeout: float = 120):
        super().__init__(daemon=True)
        self.settings, self.schema, self.phase, self.action, self.timeout = settings, schema, phase, action, timeout
        self.fired: sa.Row | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self.stop.is_set() and time.monotonic() < deadline:
            backend = loader_backend(self.settings, self.schema, self.phase)
            if backend is not None:
                self.fired = backend
                self.action(backend)
                return
            time.sleep(0.005)


def task_run_counts(flow_run_id) -> dict[str, int]:
    return {t.name.rsplit("-", 1)[0]: t.run_count for t in task_runs_of(flow_run_id)}


def ledger(settings: Settings, key: str) -> list[sa.Row]:
    return query(settings, "SELECT etag, status, attempts, error FROM {schema}.load_ledger WHERE key = :k", k=key)


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a process this test starts: the stack's settings (and this test's schema)."""
    return dict(
        os.environ,
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        PREFECT_LOCAL_STORAGE_PATH=str(tmp_path / "prefect-results"),
        **extra,
    )


# ---- the worker process killed mid-load ----------------------------------------------------------


def test_worker_killed_mid_load_the_rerun_loads_once(settings, s3, stack_env, tmp_path):
    body = fresh_batch(hour_of(1), first_id=first_id(1), listings=5000, bad_lines=3)
    key, etag = upload(s3, settings, batch_name(hour_of(1)) + ".zip", body)
    log = tmp_path / "ingest.log"
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "flows.ingest", settings.raw_bucket, key, "--etag", etag],
            cwd=REPO,
            env=child_env(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        watcher = WhenLoading(
            settings, settings.warehouse_schema, ("COPY",), lambda _: os.kill(child.pid, signal.SIGKILL)
        )
        watcher.start()
        watcher.join(120)
        watcher.stop.set()
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert watcher.fired is not None, (
        f"never saw the load transaction open; the child's log:\n{log.read_text()[-3000:]}"
    )
    assert child.returncode == -signal.SIGKILL, "the load finished before the kill: make the file bigger"
    print(f"\n[fault] killed the ingest process while its backend {watcher.fired.pid} ran {watcher.fired.query!r}")

    # Nothing of the killed load is committed, not even its ledger claim: no 'loading' row is left behind.
    assert ledger(settings, key) == []
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.fact_flats") == 0
    mark_runs_of_key_crashed(key)

    # The rerun, at once: its claim waits (if at all) only until PostgreSQL has rolled the dead session back.
    started = time.monotonic()
    state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    result = state.result()
    print(f"[fault] rerun {result['status']} in {time.monotonic() - started:.1f} s")
    assert state.is_completed() and result["status"] == "loaded" and result["fact_inserted"] == 5000
    assert not backend_alive(settings, watcher.fired.pid)
    assert [(r.status, r.attempts) for r in ledger(settings, key)] == [("loaded", 0)]

    assert measure("worker SIGKILLed mid-load, then rerun", clean_load(stack_env, [(key, etag)]), settings) == (0, 0)


# ---- the database connection dropped mid-load ----------------------------------------------------


@pytest.mark.parametrize(
    "how, phase",
    [("tcp-cut", "COPY"), ("tcp-half-open", "COPY"), ("pg-terminate-backend", "MERGE")],
    ids=["tcp-cut-during-copy", "tcp-half-open-during-copy", "pg-terminate-backend-during-merge"],
)
def test_connection_dropped_mid_load_rolls_back_and_the_task_retry_loads_once(
    how, phase, settings, s3, stack_env, monkeypatch
):
    n = {"tcp-cut": 2, "pg-terminate-backend": 3, "tcp-half-open": 7}[how]
    key, etag = upload(
        s3,
        settings,
        batch_name(hour_of(n)) + ".zip",
        fresh_batch(hour_of(n), first_id=first_id(n), listings=3000, bad_lines=2),
    )
    pg = sa.make_url(settings.warehouse_url)
    proxy = TcpProxy(pg.host, pg.port)
    cut = {}

    def drop(backend):
        if how.startswith("tcp-"):
            cut["connections"] = proxy.cut(half_open=how == "tcp-half-open")
        else:
            cut["terminated"] = scalar(settings, "SELECT pg_terminate_backend(:pid)", pid=backend.pid)

    # The flow reaches PostgreSQL through the proxy; the watcher looks at it directly.
    monkeypatch.setenv("WAREHOUSE_URL", pg.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    watcher = WhenLoading(settings, settings.warehouse_schema, (phase,), drop)
    watcher.start()
    done: dict = {}

    def run() -> None:
        done["state"] = ingest_file(settings.raw_bucket, key, etag, return_state=True)

    runner = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True)
    started = time.monotonic()
    runner.start()
    runner.join(90)
    seconds = time.monotonic() - started
    hung = runner.is_alive()
    watcher.stop.set()
    proxy.close()  # closes a half-open cut's server ends too: a hung run gets unstuck
    runner.join(60)
    assert watcher.fired is not None, "the fault never fired"
    assert not hung, f"the run hung for {seconds:.0f} s after the fault ({how})"
    state = done["state"]
    print(f"\n[fault] {how} while the load ran {watcher.fired.query!r}: {cut}; the run took {seconds:.1f} s")
    assert state.is_completed(), state.result(raise_on_failure=False)
    result = state.result()
    assert result["status"] == "loaded" and result["fact_inserted"] == 3000
    assert not backend_alive(settings, watcher.fired.pid)
    runs = task_run_counts(state.state_details.flow_run_id)
    assert runs["load"] == 2, runs  # failed once, retried once (IO_STEP), not more
    assert [(r.status, r.attempts) for r in ledger(settings, key)] == [("loaded", 0)]
    monkeypatch.setenv("WAREHOUSE_URL", settings.warehouse_url)
    assert measure(f"connection dropped mid-load ({how})", clean_load(stack_env, [(key, etag)]), settings) == (0, 0)


# ---- S3 errors on read ---------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["before-head", "between-head-and-get"])
def test_an_object_deleted_before_it_is_read_fails_once_clearly_and_is_parked(
    when, settings, s3, stack_env, monkeypatch
):
    n = 4 if when == "before-head" else 5
    key, etag = upload(
        s3, settings, batch_name(hour_of(n)) + ".zip", fresh_batch(hour_of(n), first_id=first_id(n), listings=20)
    )

    # The raw bucket is versioned: a plain delete only hides the key behind a delete marker, and the
    # version the HEAD confirmed would still load. What makes a file gone is its version deleted for good
    # (only the raw admin may: provisioning/aws_resources.py's bucket policy).
    version = s3.head_object(Bucket=settings.raw_bucket, Key=key)["VersionId"]

    def delete_version():
        s3.delete_object(Bucket=settings.raw_bucket, Key=key, VersionId=version)

    def delete_first(request: Request):
        # The object vanishes just as the flow's GET arrives: after its HEAD confirmed the event.
        if request.method == "GET" and request.path.split("?")[0].endswith(key):
            delete_version()
        return None

    proxy = HttpProxy(stack_env["AWS_ENDPOINT_URL"], delete_first)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    if when == "before-head":
        delete_version()  # between the event and the run
    try:
        state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    finally:
        proxy.close()
    assert state.is_failed()
    error = str(state.result(raise_on_failure=False))
    print(f"\n[fault] object deleted {when}: the run failed with {error!r}")
    assert key in error and ("does not exist" in error if when == "before-head" else "disappeared" in error)
    runs = task_run_counts(state.state_details.flow_run_id)
    step = "inspect-source" if when == "before-head" else "extract"
    assert runs[step] == 1, runs  # terminal: not retried
    gets = proxy.seen(lambda r: r.method in ("GET", "HEAD") and r.path.split("?")[0].endswith(key))
    assert len(gets) == (1 if when == "before-head" else 2)  # one HEAD (and one GET): nothing repeated
    rows = ledger(settings, key)
    assert [(r.etag, r.status, r.attempts) for r in rows] == [
        (etag, "parked", 1)
    ]  # docs/operations.md: unreadable → parked at once
    assert key in rows[0].error
    # As if the file had never come: nothing of it in the warehouse.
    got = warehouse_rows(warehouse_engine(settings.warehouse_url), settings.warehouse_schema)
    print(f"[fault] rows written for the deleted object: {sum(sum(c.values()) for c in got.values())}")
    assert all(not c for c in got.values())


def test_s3_503s_on_read_are_retried_and_the_file_loads_once(settings, s3, stack_env, monkeypatch):
    key, etag = upload(
        s3,
        settings,
        batch_name(hour_of(6)) + ".zip",
        fresh_batch(hour_of(6), first_id=first_id(6), listings=50, bad_lines=1),
    )
    failures = {"left": 4}  # boto3 makes 4 attempts per call (3 retries): all fail, then Prefect retries the task

    def unavailable(request: Request):
        if request.method == "GET" and request.path.split("?")[0].endswith(key) and failures["left"] > 0:
            failures["left"] -= 1
            return s3_error(503, "ServiceUnavailable", "Please reduce your request rate.")
        return None

    proxy = HttpProxy(stack_env["AWS_ENDPOINT_URL"], unavailable)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    try:
        state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    finally:
        proxy.close()
    assert state.is_completed(), state.result(raise_on_failure=False)
    gets = proxy.seen(lambda r: r.method == "GET" and r.path.split("?")[0].endswith(key))
    runs = task_run_counts(state.state_details.flow_run_id)
    print(f"\n[fault] 4 x 503 on GET: {len(gets)} GETs, extract ran {runs['extract']} times")
    assert len(gets) == 5 and runs["extract"] == 2, runs
    assert [(r.status, r.attempts) for r in ledger(settings, key)] == [("loaded", 0)]
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack_env["AWS_ENDPOINT_URL"])
    assert measure("S3 503 on read", clean_load(stack_env, [(key, etag)]), settings) == (0, 0)


# ---- a file that fails every time ----------------------------------------------------------------


def run_catch_up(tmp_path: Path, since: datetime, until: datetime, prefix: str, **env: str) -> dict:
    """One catch-up run in a process of its own (short retry delays: `ETL_RETRY_DELAYS`), its report back.

    One file at a time: a file that fails must not block the ones after it, and no process pool starts
    (three catch-ups of three files would start nine interpreters; test_catch_up covers the pool)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.catch_up",
            "--since",
            since.isoformat(),
            "--until",
            until.isoformat(),
            "--prefix",
            prefix,
            "--max-concurrency",
            "1",
            "--json",
        ],
        cwd=REPO,
        env=child_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{"since"')))


def catch_up_report_artifact(prefix: str) -> list[dict]:
    """The report table of the newest catch-up run over this prefix, as the UI shows it."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["catch-up"])),
            limit=50,
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        )
    run = next(r for r in runs if r.parameters.get("prefix") == prefix)
    tables = [a for a in artifacts_of(run.id) if a.key == "catch-up-report"]
    assert len(tables) == 1, tables
    data = tables[0].data
    return json.loads(data) if isinstance(data, str) else data


def test_a_file_failing_every_time_is_parked_after_3_attempts_and_blocks_no_other(settings, s3, stack_env, tmp_path):
    folder = uuid.uuid4().hex[:8]
    files = [
        upload(
            s3,
            settings,
            batch_name(hour_of(40 + i)) + ".zip",
            fresh_batch(hour_of(40 + i), first_id=first_id(40 + i), listings=30),
            folder=folder,
        )
        for i in range(3)
    ]
    (good_a, _), (bad, bad_etag), (good_b, _) = files
    broken = threading.Event()
    broken.set()

    def unavailable(request: Request):  # every GET of that one object, whatever the retries
        if broken.is_set() and request.method == "GET" and request.path.split("?")[0].endswith(bad):
            return s3_error(503, "ServiceUnavailable", "Please reduce your request rate.")
        return None

    proxy = HttpProxy(stack_env["AWS_ENDPOINT_URL"], unavailable)
    prefix = f"{settings.raw_prefix}{folder}/"
    reports, ledgers = [], []
    try:
        for _ in range(3):  # three hourly catch-ups
            reports.append(
                run_catch_up(
                    tmp_path,
                    hour_of(40),
                    hour_of(43),
                    prefix,
                    AWS_ENDPOINT_URL=proxy.url,
                    ETL_RETRY_DELAYS="0",
                    AWS_MAX_ATTEMPTS="1",
                )
            )
            ledgers.append({key: [(r.status, r.attempts) for r in ledger(settings, key)] for key, _ in files})
        gets = proxy.seen(lambda r: r.method == "GET" and r.path.split("?")[0].endswith(bad))
    finally:
        proxy.close()
    print(
        f"\n[fault] a file answered 503 on every GET: {len(gets)} GETs over 3 catch-ups; ledger after each: "
        f"{[ledger_after[bad] for ledger_after in ledgers]}"
    )
    # The first catch-up loads the others at once: the failing file holds nothing up.
    assert (reports[0]["loaded_now"], reports[0]["failed"]) == (2, [bad])
    assert ledgers[0] == {good_a: [("loaded", 0)], bad: [("failed", 1)], good_b: [("loaded", 0)]}
    assert [lg[bad] for lg in ledgers] == [[("failed", 1)], [("failed", 2)], [("parked", 3)]]
    assert len(gets) == 3 * 4  # each attempt: the task's 4 tries (IO_STEP), then it gives up until the next run
    assert reports[2]["parked"] == [bad] and reports[2]["already_loaded"] == 2
    parked_row = next(row for row in catch_up_report_artifact(prefix) if row["figure"] == "parked")
    assert parked_row["files"] == 1 and bad in parked_row["keys"]
    assert "ServiceUnavailable" in ledger(settings, bad)[0].error

    # Fixed (the endpoint answers again): released with force, it loads, once.
    state = ingest_file(settings.raw_bucket, bad, bad_etag, True, return_state=True)
    assert state.is_completed() and state.result()["status"] == "loaded"
    assert [(r.status, r.attempts) for r in ledger(settings, bad)] == [("loaded", 3)]
    assert measure("file failing every time, parked, then released", clean_load(stack_env, files), settings) == (0, 0)
