from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from berlin_rentals.catch_up import RawObject
from berlin_rentals.config import Settings
from berlin_rentals.s3 import download_source, head_source, s3_client
from berlin_rentals.source import SourceObject
from tasks.common import io_step


@io_step(name="inspect-source")
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


# HEADs at once when a catch-up confirms a chunk of its listing: S3 answers each in milliseconds, and the
# client's connection pool holds 10.
CONFIRM_THREADS = 8


@io_step(name="confirm-versions", task_run_name="confirm {count} listed versions")
def confirm_versions(settings: Settings, objects: list[RawObject], count: int) -> dict[str, SourceObject | Exception]:
    """HEAD each listed version before the ledger counts an attempt for it: by key, its SourceObject (with the
    version id that pins it from here on), or why not. A version replaced since the listing (ObjectChanged)
    or a key the ingest refuses (InvalidSource) never reaches the ledger; anything else is left for the
    file's own staging to meet, retry and record."""
    s3 = s3_client(settings)

    def confirm(obj: RawObject) -> SourceObject | Exception:
        try:
            return head_source(
                s3, settings.raw_bucket, obj.key, obj.etag, raw_bucket=settings.raw_bucket, prefix=settings.raw_prefix
            )
        except Exception as exc:  # noqa: BLE001 - each file's own answer
            return exc

    with ThreadPoolExecutor(max_workers=CONFIRM_THREADS, thread_name_prefix="confirm") as pool:
        return dict(zip([o.key for o in objects], pool.map(confirm, objects), strict=True))


@io_step(name="extract")
def extract(settings: Settings, source: SourceObject, workdir: Path) -> Path:
    return download_source(s3_client(settings), source, workdir / "batch.zip")
