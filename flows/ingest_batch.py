"""Ingest a given list of raw object versions in micro-batches: one share of a catch-up that fans out.

A catch-up with more files to ingest than ETL_FANOUT_FILES does not ingest them in its own process: it
starts runs of this flow's `ingest-batch` deployment on the work pool, ETL_FANOUT_RUN_FILES files each
(locally processes of the worker; on ECS each its own task), waits for them and reports on them. Each run
ingests its files as the catch-up would (flows.catch_up.ingest_all: staged in a pool of processes, loaded
in batches), and the loads of all of them share the `warehouse-load` concurrency limit. Its files'
lineage is a table artifact of its own. Started by a catch-up; by hand only to redo one share.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow
from prefect.logging import get_run_logger

from berlin_rentals.catch_up import RawObject, as_utc
from berlin_rentals.config import ConfigError, Settings
from berlin_rentals.source import InvalidSource, normalize_etag, validate_key
from tasks.catch_up import publish_batch_lineage, read_ledger


def raw_objects(files: list[dict[str, Any]], raw_prefix: str) -> list[RawObject]:
    """The run's parameter, untrusted: each key under the raw prefix, each ETag an S3 ETag."""
    objects = []
    for item in files:
        try:
            key = validate_key(str(item["key"]), raw_prefix)
            etag = normalize_etag(str(item["etag"]))
            modified = as_utc(datetime.fromisoformat(str(item["last_modified"])))
            size = int(item.get("size") or 0)
        except InvalidSource:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSource(
                f"ingest-batch: a file of the parameter is not (key, etag, last_modified): {exc!r}"
            ) from None
        if etag is None:
            raise InvalidSource(f"ingest-batch: {key!r} has no ETag")
        objects.append(RawObject(key, etag, size, modified))
    return objects


def as_parameter(objects: list[RawObject]) -> list[dict[str, Any]]:
    return [
        {"key": o.key, "etag": o.etag, "size": o.size, "last_modified": o.last_modified.isoformat()} for o in objects
    ]


def check_bucket(bucket: str, settings: Settings) -> None:
    """The share names the bucket its catch-up listed; a run whose own settings name another must not try
    the files there: each would be 'gone' and parked, for a configuration error."""
    if bucket != settings.raw_bucket:
        raise ConfigError(
            f"ingest-batch was given files of s3://{bucket}, but this run's ETL_RAW_BUCKET is "
            f"{settings.raw_bucket!r}: the catch-up and its ingest-batch runs must share their settings "
            "(nothing was attempted)"
        )


@flow(name="ingest-batch", log_prints=True)
def ingest_batch(
    bucket: str, files: list[dict[str, Any]], max_concurrency: int = 2, batch_max_files: int | None = None
) -> dict[str, Any]:
    """Ingest these object versions, staged side by side and loaded in batches.

    Args:
        bucket: The raw bucket the catch-up listed (a run with another ETL_RAW_BUCKET refuses the share).
        files: The versions, each {"key", "etag", "last_modified", "size"} as a catch-up lists them.
        max_concurrency: Files staged at once, each in a process of its own.
        batch_max_files: Files per load transaction (default ETL_BATCH_MAX_FILES).
    """
    from flows.catch_up import ingest_all

    logger = get_run_logger()
    settings = Settings.from_env()
    check_bucket(bucket, settings)
    objects = raw_objects(files, settings.raw_prefix)
    outcomes, lineage = ingest_all(
        settings, objects, max_concurrency, batch_max_files or settings.batch_max_files, settings.batch_max_records
    )
    ledger = read_ledger(settings, [o.key for o in objects])
    publish_batch_lineage(outcomes, lineage, ledger, settings.raw_bucket)
    counts = {status: sum(o.status == status for o in outcomes) for status in ("loaded", "skipped", "failed")}
    logger.info(
        "ingest-batch of %d files: %d loaded, %d skipped, %d failed",
        len(objects),
        counts["loaded"],
        counts["skipped"],
        counts["failed"],
    )
    return counts | {"files": len(objects), "failed_keys": sorted(o.obj.key for o in outcomes if o.status == "failed")}
