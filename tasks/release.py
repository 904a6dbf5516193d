"""Tasks of the release-parked flow: thin wrappers over berlin_rentals.warehouse.attempts."""

from __future__ import annotations

from datetime import datetime

from berlin_rentals.config import Settings
from berlin_rentals.warehouse.attempts import parked_files, release_file
from berlin_rentals.warehouse.engines import target_for
from tasks.common import io_step, warehouse_engine


@io_step(name="find-parked")
def find_parked(settings: Settings, since: datetime, error_like: str) -> list[tuple[str, str, int, str, str]]:
    """(key, etag, attempts, parked at, error) of the raw bucket's parked versions matching the filters."""
    rows = parked_files(
        warehouse_engine(settings.warehouse_url), settings.warehouse_schema, settings.raw_bucket, since, error_like
    )
    return [(r.key, r.etag, r.attempts, r.parked_at.isoformat(), r.error or "") for r in rows]


@io_step(name="release-file")
def release(settings: Settings, key: str, etag: str) -> bool:
    """Idempotent: a version already released (or loaded meanwhile) is left as it is."""
    target = target_for(settings.warehouse_url, settings.warehouse_schema, settings.redshift_iam_role_arn)
    return release_file(warehouse_engine(settings.warehouse_url), target, settings.raw_bucket, key, etag)
