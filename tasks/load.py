from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.logging import get_run_logger

from berlin_rentals.batch import TransformStats
from berlin_rentals.config import ConfigError, Settings
from berlin_rentals.s3 import s3_client
from berlin_rentals.source import SourceObject, Version
from berlin_rentals.staging import StagedBatch, read_staged_tables
from berlin_rentals.warehouse.attempts import AttemptPolicy, Failure, attempt_id
from berlin_rentals.warehouse.attempts import begin_attempt as count_attempt
from berlin_rentals.warehouse.attempts import end_attempt as mark_attempt_ended
from berlin_rentals.warehouse.attempts import record_failure as record_attempt_failure
from berlin_rentals.warehouse.engines import IAM_ROLE, target_for
from berlin_rentals.warehouse.load import LoadReport, file_status, load_staged_batch
from tasks.common import io_step, warehouse_engine

# Prefect's global concurrency limit that bounds the load transactions running at once (ETL_LOAD_CONCURRENCY
# its size; `make up` and `python -m deployments.concurrency` create it).
LOAD_LIMIT = "warehouse-load"


class LoadSlotUnavailable(ConnectionError):
    """The Prefect API could not grant a load slot. A ConnectionError, so the load step retries it."""


def _limit_missing_or_inactive() -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return not client.read_global_concurrency_limit_by_name(LOAD_LIMIT).active
        except ObjectNotFound:
            return True


def _logger():
    try:
        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run (a script, a test calling the function)
        return logging.getLogger(__name__)


@contextlib.contextmanager
def load_slot() -> Iterator[None]:
    """Hold one of `warehouse-load`'s slots for the load's transaction; wait in Prefect's queue for it.

    On Redshift the ledger claim is a `LOCK load_ledger`: without the limit, every waiting load would hold
    a connection and a query slot behind it. A missing (or disabled) limit does not stop loads: it is a
    resource bound, the ledger keeps them correct. Each such load says so in its log, with the fix.
    Prefect's own `strict=False` would only warn, and could not tell a missing limit from an API error,
    which here is retried like any connection error instead. A failed lease renewal does not abort the
    transaction: the slot lapses and the bound is briefly one loose, nothing worse.
    """
    slot = contextlib.ExitStack()
    try:
        slot.enter_context(concurrency(LOAD_LIMIT, strict=True, raise_on_lease_renewal_failure=False))
    except ConcurrencySlotAcquisitionError as exc:
        try:
            missing = _limit_missing_or_inactive()
        except Exception:  # noqa: BLE001 - the API is unreachable: what the first error said
            missing = False
        if not missing:
            raise LoadSlotUnavailable(f"no slot of the concurrency limit {LOAD_LIMIT!r}: {exc}") from exc
        _logger().warning(
            "the global concurrency limit %r does not exist or is disabled: this load runs without it, so "
            "loads are not bounded (create it: `prefect gcl create %s --limit 2`, or "
            "`python -m deployments.concurrency`; `make up` does)",
            LOAD_LIMIT,
            LOAD_LIMIT,
        )
    with slot:
        yield


def warehouse_target(settings: Settings):
    return target_for(settings.warehouse_url, settings.warehouse_schema, settings.redshift_iam_role_arn)


@io_step(name="check-ledger")
def ledger_status(settings: Settings, source: SourceObject) -> str | None:
    return file_status(warehouse_engine(settings.warehouse_url), settings.warehouse_schema, source)


@io_step(name="load")
def load(
    settings: Settings,
    source: SourceObject,
    staged: StagedBatch,
    stats: TransformStats,
    force: bool,
    flow_run_id: str | None,
) -> LoadReport:
    """One transaction: staging tables, dimensions, facts, snapshots, rejects, ledger row; at most
    `warehouse-load`'s size of them at once (the staged tables are read before a slot is taken)."""
    target = warehouse_target(settings)
    data = None
    if target.name == "postgresql":
        # PostgreSQL cannot read S3: COPY FROM STDIN the staged tables, from memory when this process
        # staged them (as the ingest flow does), else read back from the staged Parquet.
        data = staged.data
        if data is None:
            data = read_staged_tables(s3_client(settings), staged)
    with load_slot():
        return load_staged_batch(
            warehouse_engine(settings.warehouse_url),
            target,
            source,
            staged,
            stats,
            data=data,
            force=force,
            flow_run_id=flow_run_id,
        )


@io_step(name="begin-attempt")
def begin_attempt(settings: Settings, source: SourceObject, attempt: str, force: bool) -> tuple[str, int, str] | None:
    """Count this run's attempt before the heavy work (idempotent per run): (status, attempts, error) when
    the version has none left (every earlier attempt died without a word: parked now), else None. `force`
    releases it first. A setting the load will need is checked first: its absence is not the file's fault."""
    if target_for(settings.warehouse_url, settings.warehouse_schema).name == "redshift":
        if not IAM_ROLE.fullmatch(settings.redshift_iam_role_arn or ""):
            raise ConfigError(
                f"REDSHIFT_IAM_ROLE_ARN={settings.redshift_iam_role_arn or ''!r} is not an IAM role ARN "
                "(arn:aws:iam::<account>:role/<name>): Redshift's COPY reads the staged Parquet with it"
            )
    engine, target = warehouse_engine(settings.warehouse_url), warehouse_target(settings)
    return count_attempt(engine, target, source.version, attempt, attempt_policy(settings), force=force)


def end_attempt(settings: Settings, source: SourceObject, attempt: str, outcome: str) -> None:
    """Best effort, no task run of its own: the file is loaded whatever this says; an attempt left open
    would only count, much later, against a version that is loaded (and so never attempted again)."""
    try:
        engine, target = warehouse_engine(settings.warehouse_url), warehouse_target(settings)
        mark_attempt_ended(engine, target, source.version, attempt, outcome)
    except Exception as exc:  # noqa: BLE001 - see above
        _logger().warning("%s: this run's attempt was not marked %s: %r", source.uri, outcome, exc)


# Retried, and safe to retry: the attempt is counted once per run (berlin_rentals.warehouse.attempts).
@io_step(name="record-failure")
def record_failure(
    settings: Settings, version: Version, failure: Failure, flow_run_id: str | None
) -> tuple[str | None, int]:
    """End this run's attempt as failed (parked when terminal or the last); without a run id, an attempt of its
    own (attempts.Failure says what the ledger records)."""
    return record_attempt_failure(
        warehouse_engine(settings.warehouse_url),
        warehouse_target(settings),
        version,
        failure,
        run_id=attempt_id(flow_run_id),
        policy=attempt_policy(settings),
    )


def attempt_policy(settings: Settings) -> AttemptPolicy:
    return AttemptPolicy(settings.max_attempts, settings.attempt_stale_seconds)
