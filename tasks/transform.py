from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from berlin_rentals.archive import iter_lines
from berlin_rentals.config import Settings
from berlin_rentals.source import SourceObject
from berlin_rentals.transform import Batch, output_variant, transform_lines
from berlin_rentals.warehouse.fit import FIT_VERSION, fit_batch


def etag_cache_key(context, parameters) -> str:
    """Same content, same result: the ETag, with what else decides the output (the transform's version, the
    model's columns, the salts' fingerprints: transform.output_variant), is the whole key."""
    settings = parameters["settings"]
    variant = output_variant(settings.masker(), settings.pseudonymizer())
    return f"transform-{variant}-fit{FIT_VERSION}-{parameters['source'].etag}"


@task(
    name="transform",
    cache_key_fn=etag_cache_key,
    persist_result=True,
    cache_expiration=timedelta(days=14),
)
def transform(settings: Settings, source: SourceObject, archive_path: Path) -> Batch:
    """Decode and reshape the batch. Data errors never retry: bad lines are kept, bad files fail once."""
    batch = transform_lines(
        iter_lines(
            archive_path,
            source.uri,
            max_member_bytes=settings.max_member_bytes,
            max_line_bytes=settings.max_line_bytes,
            max_inflate_ratio=settings.max_inflate_ratio,
            max_file_bytes=settings.max_file_bytes,
        ),
        masker=settings.masker(),
        max_rejected_raw_bytes=settings.max_rejected_raw_bytes,
        pseudonyms=settings.pseudonymizer(),
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
    return batch
