"""Lineage of one ingest, as plain data: the table, links and summary the flow publishes as artifacts."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from berlin_rentals.source import SourceObject
from berlin_rentals.staging import StagedBatch
from berlin_rentals.transform import TransformStats
from berlin_rentals.warehouse.load import LoadReport


def artifact_key(key: str) -> str:
    """Prefect artifact keys allow only lower-case letters, digits and dashes."""
    stem = re.sub(r"[^a-z0-9]+", "-", key.rsplit("/", 1)[-1].lower()).strip("-")[:60] or "object"
    return f"lineage-{stem}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def object_link(uri_bucket: str, key: str, endpoint_url: str | None, region: str) -> str:
    if endpoint_url:  # the local moto server serves objects over plain HTTP
        return f"{endpoint_url.rstrip('/')}/{uri_bucket}/{key}"
    return f"https://{region}.console.aws.amazon.com/s3/object/{uri_bucket}?prefix={key}"


def lineage_rows(
    source: SourceObject, stats: TransformStats | None, report: LoadReport | None, status: str
) -> list[dict[str, Any]]:
    stats = stats or TransformStats()
    row: dict[str, Any] = {
        "source_object": source.uri,
        "etag": source.etag,
        "size_bytes": source.size,
        "batch_hour": source.batch_hour.isoformat(),
        "batch_hour_from": source.batch_hour_source,
        "status": status,
        "records_read": stats.lines_read,
        "listings": stats.listings,
        "rejected": stats.rejected,
        "flagged": stats.flagged,
        "unknown_fields": sum(stats.unknown_fields.values()),
    }
    if report is not None:
        row |= {
            "fact_flats_inserted": report.fact_inserted,
            "fact_flats_updated": report.fact_updated,
            "fact_flats_stale_kept_older": report.fact_stale,
            "flat_snapshots_written": report.snapshots_written,
            "dim_city_inserted": report.dim_city_inserted,
            "dim_address_inserted": report.dim_address_inserted,
            "dim_agency_inserted": report.dim_agency_inserted,
            "dim_agency_updated": report.dim_agency_updated,
            "rejected_records_written": report.rejected,
        }
    return [row]


def summary_markdown(
    source: SourceObject, stats: TransformStats | None, staged: StagedBatch | None,
    report: LoadReport | None, status: str, seconds: float, error: str | None = None,
) -> str:
    lines = [f"### Ingest of `{source.uri}`: **{status}**", ""]
    lines.append(f"- ETag `{source.etag}`, {source.size:,} bytes, batch hour {source.batch_hour:%Y-%m-%d %H:00} UTC "
                 f"(from the object's {source.batch_hour_source.replace('_', ' ')})")
    if source.batch_hour_source == "name_in_future":
        lines.append(f"- **flag:** the name's hour lies more than a day after the upload "
                     f"({source.last_modified:%Y-%m-%d %H:%M} UTC); rows are filed under the name's hour")
    if stats is not None:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(stats.rejected_by_reason.items())) or "none"
        lines.append(f"- {stats.lines_read:,} lines read, {stats.listings:,} listings, {stats.rejected:,} rejected ({reasons})")
        if stats.flagged:
            flags = ", ".join(f"{k}: {v}" for k, v in sorted(stats.flags_by_code.items()))
            lines.append(f"- {stats.flagged:,} listings loaded with quality flags ({flags})")
        if stats.unknown_fields:
            names = ", ".join(f"`{k}` ({v})" for k, v in stats.unknown_fields.most_common(20))
            lines.append(f"- unknown fields, ignored: {names}")
    if report is not None and report.status == "loaded":
        lines.append(f"- fact_flats: {report.fact_inserted} inserted, {report.fact_updated} updated, "
                     f"{report.fact_stale} older than the warehouse (snapshot only)")
        lines.append(f"- dimensions: {report.dim_city_inserted} cities, {report.dim_address_inserted} addresses, "
                     f"{report.dim_agency_inserted} agencies new; {report.dim_agency_updated} agencies updated")
    elif report is not None:
        lines.append(f"- skipped: {report.reason}")
    if staged is not None:
        lines.append(f"- staged in `s3://{staged.bucket}/{staged.prefix}`")
    if error:
        lines.append(f"- error: `{error[:500]}`")
    lines.append(f"- took {seconds:.2f} s")
    return "\n".join(lines)
