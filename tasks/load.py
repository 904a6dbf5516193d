from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from berlin_rentals.config import Settings
from berlin_rentals.s3 import s3_client
from berlin_rentals.source import SourceObject
from berlin_rentals.staging import StagedBatch, read_staged_table
from berlin_rentals.transform import TransformStats
from berlin_rentals.warehouse.engines import target_for
from berlin_rentals.warehouse.load import LoadReport, file_status, load_staged_batch, record_load_failure
from tasks.common import IO_STEP, warehouse_engine


def _target(settings: Settings):
    return target_for(settings.warehouse_url, settings.warehouse_schema, settings.redshift_iam_role_arn)


@task(name="check-ledger", **IO_STEP)
def ledger_status(settings: Settings, source: SourceObject) -> str | None:
    return file_status(warehouse_engine(settings.warehouse_url), settings.warehouse_schema, source)


@task(name="load", **IO_STEP)
def load(
    settings: Settings,
    source: SourceObject,
    staged: StagedBatch,
    stats: TransformStats,
    force: bool,
    flow_run_id: str | None,
) -> LoadReport:
    """One transaction: staging tables, dimensions, facts, snapshots, rejects, ledger row."""
    target = _target(settings)
    data = None
    if target.name == "postgresql":
        # PostgreSQL cannot read S3: COPY FROM STDIN the staged tables, from memory when this process
        # staged them (as the ingest flow does), else read back from the staged Parquet.
        data = staged.data
        if data is None:
            s3 = s3_client(settings)
            data = {name: read_staged_table(s3, staged, name) for name in staged.rows}
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


@task(name="record-failure", retries=3, retry_delay_seconds=[1, 5, 15], cache_policy=NO_CACHE)
def record_failure(
    settings: Settings, bucket: str, key: str, etag: str, error: str, terminal: bool, flow_run_id: str | None
) -> tuple[str, int]:
    return record_load_failure(
        warehouse_engine(settings.warehouse_url),
        _target(settings),
        bucket,
        key,
        etag,
        error,
        terminal=terminal,
        max_attempts=settings.max_attempts,
        flow_run_id=flow_run_id,
    )
