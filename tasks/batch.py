"""The catch-up's micro-batches: stage each file on its own, load many in one transaction.

`stage_object` runs the ingest pipeline of one file up to its staged Parquet (in a process of the pool);
`load_in_batches` loads the staged files a batch at a time (`load-batch`, one task run and one warehouse
transaction per batch) while the pool goes on staging the next ones. A batch whose load fails after its
retries is split in halves until the failing file is alone; that file then runs the whole ingest
pipeline (flows.ingest.run_ingest), which records its failure and parks it after its attempts, as an
event-driven run would. So one file never holds up a backfill, and exactly once holds per file.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.runtime import task_run

from berlin_rentals.config import Settings
from berlin_rentals.ingest_result import FAILED, LOADED, SKIPPED, SUPERSEDED, IngestFailed, IngestResult
from berlin_rentals.s3 import s3_client
from berlin_rentals.staging import read_staged_tables, write_batch_manifests
from berlin_rentals.warehouse.attempts import begin_attempts
from berlin_rentals.warehouse.load import BatchFile, LoadResult, load_staged_files
from tasks.alerts import emit_file_parked
from tasks.common import io_step, run_inline, warehouse_engine
from tasks.load import _target, end_attempt, load_slot


@io_step(name="begin-attempts", task_run_name="count the attempts of {count} files")
def begin_batch_attempts(
    settings: Settings, attempts: list[tuple[str, str, str, str]], count: int
) -> list[IngestFailed]:
    """Count the attempts of the next files to stage, (bucket, key, etag, attempt id) each, in one transaction
    (berlin_rentals.warehouse.attempts.begin_attempts); retried safely, an attempt counts once. Those out of
    attempts (every earlier one died without a word) are parked now: their failures, to report."""
    began = datetime.now(UTC)
    exhausted = begin_attempts(
        warehouse_engine(settings.warehouse_url),
        _target(settings),
        attempts,
        max_attempts=settings.max_attempts,
        stale_seconds=settings.attempt_stale_seconds,
    )
    failures = []
    for bucket, key, etag, attempt in attempts:
        if (key, etag) in exhausted:
            status, count_, error = exhausted[(key, etag)]
            result = IngestResult(
                FAILED,
                bucket,
                key,
                etag,
                ledger=status,
                attempts=count_,
                error=f"AttemptsExhausted: {error}",
                error_type="AttemptsExhausted",
                attempt=attempt,
            )
            if result.parked:
                emit_file_parked(result, began)
            failures.append(IngestFailed(result))
    return failures


@task(name="stage-object", task_run_name="stage {key}", cache_policy=NO_CACHE)
def stage_object(
    settings: Settings, bucket: str, key: str, etag: str, attempt: str, version_id: str | None = None
) -> IngestResult:
    """The ingest pipeline of one object version up to its staged Parquet (flows.ingest.run_ingest with
    until_staged), its attempt counted already (begin-attempts): STAGED, or superseded; a failure is recorded
    (and parks after its attempts) and raised as IngestFailed, as ingest-object does. It reads nothing of
    the warehouse: on Redshift a batch's load locks the ledger, and the pool goes on staging meanwhile."""
    from flows.ingest import run_ingest

    try:
        result = run_ingest(
            settings,
            bucket,
            key,
            etag,
            force=False,
            run_id=attempt,
            call=run_inline,
            version_id=version_id,
            until_staged=True,
        )
    except IngestFailed as exc:
        raise IngestFailed(exc.result.portable()) from exc.__cause__
    return result.portable()


def _batch_id() -> str:
    return str(task_run.id) if task_run.id else f"batch-{uuid.uuid4().hex}"


@io_step(name="load-batch", task_run_name="load a batch of {count} files")
def load_batch(settings: Settings, files: list[BatchFile], count: int) -> LoadResult:
    """One transaction for the batch's files (berlin_rentals/warehouse/load.py), under a slot of
    `warehouse-load`. PostgreSQL streams the staged tables, read back from S3 side by side; Redshift COPYs
    each table once, from a manifest of the batch's files written first. The batch id the rows and ledger
    record is this task run's."""
    batch_id = _batch_id()
    target = _target(settings)
    s3 = s3_client(settings)
    data = manifests = None
    if target.name == "postgresql":
        # 3 files at once, each 3 tables at once (read_staged_tables): within the S3 client's 10 connections
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="read-batch") as pool:
            tables = list(pool.map(lambda f: read_staged_tables(s3, f.staged), files))
        data = {f.source.etag: t for f, t in zip(files, tables, strict=True)}
    else:
        manifests = write_batch_manifests(
            s3,
            [f.staged for f in files],
            bucket=settings.staging_bucket,
            staging_prefix=settings.staging_prefix,
            batch_id=batch_id,
        )
    with load_slot():
        return load_staged_files(
            warehouse_engine(settings.warehouse_url), target, files, run_id=batch_id, data=data, manifests=manifests
        )


def ingest_alone(settings: Settings, staged: IngestResult) -> IngestResult | IngestFailed:
    """The whole ingest pipeline for the file a failed batch was split down to, under the attempt its
    staging counted: its transform is a cache hit."""
    from flows.ingest import run_ingest

    source = staged.source
    try:
        result = run_ingest(
            settings,
            staged.bucket,
            staged.key,
            staged.etag,
            force=False,
            run_id=staged.attempt,
            call=run_inline,
            version_id=source.version_id if source else None,
        )
    except IngestFailed as exc:
        return IngestFailed(replace(exc.result.portable(), seconds=staged.seconds + exc.result.seconds))
    except Exception as exc:  # noqa: BLE001 - e.g. the ledger unreachable: this file's failure, not the backfill's
        error = f"{type(exc).__name__}: {exc}"
        return IngestFailed(replace(staged.portable(), status=FAILED, error=error, error_type=type(exc).__name__))
    return replace(result.portable(), seconds=staged.seconds + result.seconds)


def load_in_batches(settings: Settings, staged: list[IngestResult]) -> list[IngestResult | IngestFailed]:
    """Load these STAGED files as one batch; each file's outcome (an IngestResult, or IngestFailed for a
    file that failed alone). A failed batch (after load-batch's retries) is split in halves, down to one file,
    which then runs alone (ingest_alone)."""
    logger = get_run_logger()
    files = [BatchFile(r.source, r.staged, r.stats, r.attempt) for r in staged if r.source and r.staged and r.stats]
    try:
        report = load_batch(settings, files, len(files))
    except Exception as exc:  # noqa: BLE001 - any failure of the batch: isolate the file that causes it
        if len(staged) == 1:
            logger.warning("%s: its load failed in a batch (%s); loading it on its own", staged[0].uri, exc)
            return [ingest_alone(settings, staged[0])]
        half = len(staged) // 2
        logger.warning(
            "a batch of %d files failed to load (%s: %s); splitting it into %d and %d files",
            len(staged),
            type(exc).__name__,
            exc,
            half,
            len(staged) - half,
        )
        return load_in_batches(settings, staged[:half]) + load_in_batches(settings, staged[half:])
    outcomes: list[IngestResult | IngestFailed] = []
    for result in staged:
        load = report.reports.get((result.key, result.etag))
        if load is None:  # not in the batch (it had no staged tables): the pipeline of its own says why
            outcomes.append(ingest_alone(settings, result))
        elif load.status == LOADED:  # a correction too: the batch restated its key
            outcomes.append(replace(result, status=LOADED, report=load, batch=report.run_id))
        else:  # skipped (loaded or parked by another run meanwhile), or superseded by a newer version
            if result.source is not None and result.attempt:
                end_attempt(settings, result.source, result.attempt, load.status)
            ledger = load.ledger if load.status == SKIPPED else SUPERSEDED
            error = load.reason if load.status == SUPERSEDED else None
            outcomes.append(replace(result, status=load.status, ledger=ledger, error=error, batch=report.run_id))
    return outcomes
