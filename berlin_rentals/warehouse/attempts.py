"""Attempts at an object version, counted where a crash cannot lose them and a retry cannot double them.

Each run that works on a version writes one `load_attempts` row (keyed by the run's id) in a transaction
of its own before the heavy work (extract, transform, load): a process the kernel kills for lack of
memory still leaves its attempt behind, and a statement retried after a lost commit acknowledgement finds
its row and counts nothing twice. The ledger's `attempts` is that count; a version out of attempts is
parked, and a released one (`release_file`, or a forced run) starts from zero. An attempt ended by a
configuration error (a missing setting, S3 access denied) is not counted against the file.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from berlin_rentals.batch import TransformStats
from berlin_rentals.source import Version
from berlin_rentals.warehouse.engines import Target
from berlin_rentals.warehouse.sql import statement, statements


@dataclass(frozen=True)
class AttemptPolicy:
    """How many attempts a version gets (ETL_MAX_ATTEMPTS), and how long an attempt may go without an end
    before it counts as a dead process's (ETL_ATTEMPT_STALE_SECONDS)."""

    max_attempts: int
    stale_seconds: int = 1800


def attempt_id(run_id: str | None) -> str:
    """The id an attempt is counted under: the run's, or (outside a run) a new one per call."""
    return run_id or f"adhoc-{uuid.uuid4().hex}"


def _lock(conn: sa.Connection, target: Target) -> None:
    # Redshift enforces no keys: the ledger's table lock (as its claim takes) serialises the counting.
    if target.name == "redshift":
        for stmt in statements("redshift/lock_load_ledger.sql", target.schema):
            conn.execute(stmt)


def _count(conn: sa.Connection, schema: str, key: dict[str, Any], stale_seconds: int) -> tuple[int, int, int]:
    """(attempts counted, of them this run's, of them never finished)."""
    stale_before = datetime.now(UTC) - timedelta(seconds=stale_seconds)
    row = conn.execute(statement("ledger/count_attempts.sql", schema), key | {"stale_before": stale_before}).one()
    return int(row.attempts or 0), int(row.this_run or 0), int(row.unfinished or 0)


def _write_ledger(conn: sa.Connection, target: Target, values: dict[str, Any]) -> tuple[str, int]:
    """The ledger row takes the status and count (unless the version is loaded meanwhile: then it stays), and
    the file's counts when `values` has them."""
    schema = target.schema
    values = {"records_read": None, "rejected_count": None, "rejected_by_reason": None} | values
    if target.name == "postgresql":
        row = conn.execute(statement("postgresql/record_file_failure.sql", schema), values).first()
        return ("loaded", 0) if row is None else (row.status, row.attempts)
    row = conn.execute(statement("ledger/select_file_status.sql", schema), values).first()
    if row is not None and row.status == "loaded":
        return "loaded", 0
    path = "ledger/insert_file_failure.sql" if row is None else "ledger/update_file_failure.sql"
    conn.execute(statement(path, schema), values)
    return values["status"], values["attempts"]


def _begin(
    conn: sa.Connection,
    target: Target,
    ids: dict[str, Any],
    now: datetime,
    policy: AttemptPolicy,
    force: bool,
) -> tuple[str, int, str] | None:
    if force:
        conn.execute(statement("ledger/release_attempts.sql", target.schema), ids | {"released_at": now})
    attempts, this_run, unfinished = _count(conn, target.schema, ids, policy.stale_seconds)
    if not this_run and attempts >= policy.max_attempts:
        error = (
            f"s3://{ids['bucket']}/{ids['key']}: its {attempts} attempt(s) are used up, {unfinished} of them ended "
            "without a word: the process died while it worked on this version (killed, e.g. for lack of memory; "
            "the worker's log has the signal)"
        )
        run_id = ids["run_id"]
        values = ids | {"flow_run_id": run_id, "started_at": now, "finished_at": now, "error": error}
        status, counted = _write_ledger(conn, target, values | {"status": "parked", "attempts": attempts})
        return status, counted, error
    conn.execute(statement("ledger/insert_attempt.sql", target.schema), ids | {"started_at": now})
    return None


def begin_attempt(
    engine: sa.Engine, target: Target, version: Version, run_id: str, policy: AttemptPolicy, *, force: bool = False
) -> tuple[str, int, str] | None:
    """Count this run's attempt before the heavy work. None: go ahead. ('parked', n, error): the version used up
    its attempts without one of them recording an end (each process died), so it is parked now instead of
    being run into the same death every hour. `force` releases the version first."""
    ids = version._asdict() | {"run_id": run_id}
    with engine.begin() as conn:
        _lock(conn, target)
        return _begin(conn, target, ids, datetime.now(UTC), policy, force)


def begin_attempts(
    engine: sa.Engine, target: Target, attempts: list[tuple[str, str, str, str]], policy: AttemptPolicy
) -> dict[tuple[str, str], tuple[str, int, str]]:
    """begin_attempt for many (bucket, key, etag, run id) in one transaction (a batch's files: one commit, not
    one a file); the versions out of attempts, parked now, by (key, etag)."""
    now = datetime.now(UTC)
    exhausted = {}
    with engine.begin() as conn:
        _lock(conn, target)
        for bucket, key, etag, run_id in attempts:
            ids = {"bucket": bucket, "key": key, "etag": etag, "run_id": run_id}
            parked = _begin(conn, target, ids, now, policy, False)
            if parked is not None:
                exhausted[(key, etag)] = parked
    return exhausted


@dataclass(frozen=True)
class Failure:
    """Why an attempt failed, as the ledger records it. `terminal`: no retry can succeed (parked now).
    `counted=False` (a configuration error): not held against the file. `stats`, when the transform ran:
    the file's lines and rejects, for its row (a file parked for its rejects says how many, and why)."""

    error: str
    terminal: bool = False
    counted: bool = True
    stats: TransformStats | None = None


def record_failure(
    engine: sa.Engine, target: Target, version: Version, failure: Failure, *, run_id: str, policy: AttemptPolicy
) -> tuple[str | None, int]:
    """End this run's attempt as failed, in one transaction: the ledger's count includes it once however
    often this is retried, and the version is parked when the failure is terminal or the last attempt.

    Not counted (a configuration error): the ledger row is left as it was; returns its status (None without
    a row) and the count. Without the file's counts the row keeps those it had."""
    now = datetime.now(UTC)
    ids = version._asdict() | {"run_id": run_id}
    ended = {"finished_at": now, "error": failure.error[:4000]}
    with engine.begin() as conn:
        _lock(conn, target)
        # A failure before begin_attempt (the object could not even be confirmed) is an attempt too.
        conn.execute(statement("ledger/insert_attempt.sql", target.schema), ids | {"started_at": now})
        outcome = "failed" if failure.counted else "config"
        conn.execute(statement("ledger/finish_attempt.sql", target.schema), ids | ended | {"outcome": outcome})
        attempts, _, _ = _count(conn, target.schema, ids, policy.stale_seconds)
        if not failure.counted:
            row = conn.execute(statement("ledger/select_file_status.sql", target.schema), ids).first()
            return (None if row is None else row.status), attempts
        status = "parked" if failure.terminal or attempts >= policy.max_attempts else "failed"
        values = ids | ended | {"flow_run_id": run_id, "started_at": now, "status": status, "attempts": attempts}
        if (stats := failure.stats) is not None:
            values |= {
                "records_read": stats.lines_read,
                "rejected_count": stats.rejected,
                "rejected_by_reason": stats.rejected_summary(),
            }
        return _write_ledger(conn, target, values)


def end_attempt(engine: sa.Engine, target: Target, version: Version, run_id: str, outcome: str) -> None:
    """Mark this run's attempt ended (loaded, skipped): never taken for a dead one later."""
    now = datetime.now(UTC)
    values = version._asdict() | {"run_id": run_id, "outcome": outcome}
    with engine.begin() as conn:
        conn.execute(
            statement("ledger/finish_attempt.sql", target.schema), values | {"finished_at": now, "error": None}
        )


def parked_files(engine: sa.Engine, schema: str, bucket: str, since: datetime, error_like: str = "%") -> list[sa.Row]:
    """Parked versions of a bucket, parked at or after `since`, whose error matches the LIKE pattern."""
    with engine.connect() as conn:
        return conn.execute(
            statement("ledger/select_parked_files.sql", schema),
            {"bucket": bucket, "since": since, "error_like": error_like},
        ).all()


def release_file(engine: sa.Engine, target: Target, bucket: str, key: str, etag: str) -> bool:
    """Release one parked version: 'failed' with its attempts reset, so the next ingest tries it again with
    the full number of attempts. False if it was not parked (loaded or released meanwhile)."""
    now = datetime.now(UTC)
    ids = {"bucket": bucket, "key": key, "etag": etag, "released_at": now}
    with engine.begin() as conn:
        _lock(conn, target)
        released = conn.execute(statement("ledger/release_parked_file.sql", target.schema), ids).rowcount
        if released:
            conn.execute(statement("ledger/release_attempts.sql", target.schema), ids)
    return bool(released)
