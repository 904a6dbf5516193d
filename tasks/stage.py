from __future__ import annotations

from prefect import task

from berlin_rentals.config import Settings
from berlin_rentals.s3 import s3_client
from berlin_rentals.source import SourceObject
from berlin_rentals.staging import StagedBatch, stage_batch
from berlin_rentals.transform import Batch
from tasks.common import IO_STEP


@task(name="stage", **IO_STEP)
def stage(settings: Settings, source: SourceObject, batch: Batch) -> StagedBatch:
    """Parquet per table under the ETag's prefix in the staging bucket (idempotent: same key, same bytes)."""
    return stage_batch(
        s3_client(settings),
        batch,
        bucket=settings.staging_bucket,
        staging_prefix=settings.staging_prefix,
        etag=source.etag,
    )
