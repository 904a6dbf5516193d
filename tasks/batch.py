"""The catch-up's batch steps: count the attempts of many files in one transaction, load many staged files
in one (`load-batch`). flows/batches.py orchestrates them."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from prefect.runtime import task_run

from berlin_rentals.config import Settings
from berlin_rentals.ingest_result import FAILED, IngestFailed, IngestResult
from berlin_rentals.s3 import s3_client
from berlin_rentals.staging import read_staged_tables, write_batch_manifests
from berlin_rentals.warehouse.attempts import begin_attempts
from berlin_rentals.warehouse.load import BatchFile, LoadResult, load_staged_files
from tasks.alerts import emit_file_parked
from tasks.common import io_step, warehouse_engine
from tasks.load import attempt_policy, load_slot, warehouse_target


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
        warehouse_target(settings),
        attempts,
        attempt_policy(settings),
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


def _batch_id() -> str:
    return str(task_run.id) if task_run.id else f"batch-{uuid.uuid4().hex}"


@io_step(name="load-batch", task_run_name="load a batch of {count} files")
def load_batch(settings: Settings, files: list[BatchFile], count: int) -> LoadResult:
    """One transaction for the batch's files (berlin_rentals/warehouse/load.py), under a slot of
    `warehouse-load`. PostgreSQL streams the staged tables, read back from S3 side by side; Redshift COPYs
    each table once, from a manifest of the batch's files written first. The batch id the rows and ledger
    record is this task run's."""
    batch_id = _batch_id()
    target = warehouse_target(settings)
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
