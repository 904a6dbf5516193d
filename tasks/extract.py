from __future__ import annotations

from pathlib import Path

from prefect import task

from berlin_rentals.config import Settings
from berlin_rentals.s3 import download_source, head_source, s3_client
from berlin_rentals.source import SourceObject
from tasks.common import IO_STEP


@task(name="inspect-source", **IO_STEP)
def inspect_source(
    settings: Settings, bucket: str, key: str, etag: str | None, version_id: str | None = None
) -> SourceObject:
    """HEAD the object (that version of it, when named): it must exist under the raw prefix with the ETag
    the caller named."""
    return head_source(
        s3_client(settings),
        bucket,
        key,
        etag,
        raw_bucket=settings.raw_bucket,
        prefix=settings.raw_prefix,
        version_id=version_id or None,
    )


@task(name="extract", **IO_STEP)
def extract(settings: Settings, source: SourceObject, workdir: Path) -> Path:
    return download_source(s3_client(settings), source, workdir / "batch.zip")
