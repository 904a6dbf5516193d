from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect.logging import get_run_logger

from berlin_rentals.archive import iter_lines
from berlin_rentals.batch import output_variant
from berlin_rentals.config import ConfigError, Settings
from berlin_rentals.s3 import s3_client
from berlin_rentals.source import SourceObject
from berlin_rentals.staging import Transformed, stage_batch
from berlin_rentals.transform import transform_lines
from berlin_rentals.warehouse.fit import FIT_VERSION, fit_batch
from tasks.common import io_step


def output_of(settings: Settings) -> str:
    """The variant these settings transform a file into (batch.output_variant): what, besides the content,
    decides the staged tables. The one place the settings are mapped to it."""
    return output_variant(
        settings.masker(),
        settings.pseudonymizer(),
        max_rejected_raw_bytes=settings.max_rejected_raw_bytes,
        max_line_bytes=settings.max_line_bytes,
        max_rejected_rows=settings.max_rejected_rows,
    )


def etag_cache_key(context, parameters) -> str:
    """Same content, same result: the ETag, with what else decides the output (output_of), is the whole key."""
    return f"transform-{output_of(parameters['settings'])}-fit{FIT_VERSION}-{parameters['source'].etag}"


def cached_on_s3(settings: Settings) -> dict[str, Any]:
    """transform_stage's options: its result persists through prefect-aws's S3Bucket block ETL_RESULTS_BLOCK
    (the staging bucket, `results/`; deployments/results.py), so a run in a new container (every ECS flow
    run is one) finds what an earlier run staged. Loaded here, once per file (Prefect then uses the saved
    block as it is), so that a missing block is a configuration error, not a failure counted against the file.

    A pointer expires with the staging lifecycle (results/ and clean/ share ETL_STAGING_RETENTION_DAYS), so
    it never outlives its Parquet by more than the seconds between the two writes; the caller HEADs the
    manifest for those, and for Parquet deleted by hand."""
    from prefect_aws import S3Bucket

    name = settings.results_block.removeprefix("s3-bucket/")
    try:
        storage = S3Bucket.load(name)
    except ValueError as exc:
        raise ConfigError(
            f"ETL_RESULTS_BLOCK={settings.results_block!r}: {exc} (create it: `python -m deployments.results`; "
            "`make up` does)"
        ) from None
    return dict(result_storage=storage, cache_expiration=timedelta(days=settings.staging_retention_days))


# Transient S3 errors of the staging PUTs retry (the whole step: the transform is pure, the PUTs idempotent);
# data errors never do: bad lines are kept, bad files fail once. Cached by ETag instead of IO_STEP's NO_CACHE.
@io_step(
    name="transform-stage",
    cache_key_fn=etag_cache_key,
    persist_result=True,
    # A hit reads the pointer from result storage, never Prefect's in-memory copy of an earlier result: that
    # would hold every staged table a catch-up process ever transformed (an LRU of 1,000 results), and hand
    # back tables the staged Parquet may no longer match.
    cache_result_in_memory=False,
)
def transform_stage(settings: Settings, source: SourceObject, archive_path: Path) -> Transformed:
    """Decode and reshape the batch, then stage its tables as Parquet under the ETag's prefix.

    One cached unit, because its result is then a pointer (prefix, rows, counts) rather than the batch: a
    rerun of the same version in another process skips both and the load reads the staged Parquet."""
    batch = transform_lines(
        iter_lines(
            archive_path,
            source.uri,
            max_member_bytes=settings.max_member_bytes,
            max_line_bytes=settings.max_line_bytes,
            max_inflate_ratio=settings.max_inflate_ratio,
            max_file_bytes=settings.max_file_bytes,
            max_members=settings.max_members,
        ),
        masker=settings.masker(),
        max_rejected_raw_bytes=settings.max_rejected_raw_bytes,
        pseudonyms=settings.pseudonymizer(),
        max_line_bytes=settings.max_line_bytes,
        max_rejected_rows=settings.max_rejected_rows,
    )
    # Fitted to the warehouse's columns before the result is cached: a listing the warehouse cannot
    # hold is rejected here, not left for the COPY to refuse the whole file.
    batch = fit_batch(batch)
    logger = get_run_logger()
    stats = batch.stats
    logger.info(
        "%s: %d lines, %d listings, %d rejected %s",
        source.uri,
        stats.lines_read,
        stats.listings,
        stats.rejected,
        dict(stats.rejected_by_reason),
    )
    if stats.flagged:
        logger.warning(
            "%s: %d listings loaded with quality flags %s", source.uri, stats.flagged, dict(stats.flags_by_code)
        )
    if stats.rejected_raw_omitted:
        logger.warning(
            "%s: %d rejected lines kept without their raw text (past ETL_MAX_REJECTED_RAW_BYTES; the raw object "
            "has them)",
            source.uri,
            stats.rejected_raw_omitted,
        )
    if stats.unknown_fields:
        logger.warning("%s: unknown fields ignored %s", source.uri, dict(stats.unknown_fields.most_common(20)))
    rejected = batch.tables["rejected_records"]
    for reason in rejected.column("reason").to_pylist()[:10]:
        logger.warning("%s: rejected %s", source.uri, reason)
    staged = stage_batch(
        s3_client(settings),
        batch,
        bucket=settings.staging_bucket,
        staging_prefix=settings.staging_prefix,
        etag=source.etag,
    )
    return Transformed(staged=staged, stats=stats)
