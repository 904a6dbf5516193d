"""Lineage of one ingest, as plain data: the rows and markdown the flow publishes as artifacts.

Per run: one lineage table (what was read, where it was staged, what was written), one summary, and
the rejected lines when there are any. Each keyed by the object, so the artifacts page lists one
series per file, the newest run on top.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pyarrow as pa

from berlin_rentals.ingest_result import FAILED, IngestResult
from berlin_rentals.markdown import code, text

# A run's rejects table shows this many lines; the warehouse's rejected_records holds them all.
MAX_REJECTS_SHOWN = 200


def artifact_key(key: str, kind: str = "lineage") -> str:
    """`<kind>-<file stem>-<hash>`: Prefect artifact keys allow only lower-case letters, digits and dashes."""
    stem = re.sub(r"[^a-z0-9]+", "-", key.rsplit("/", 1)[-1].lower()).strip("-")[:60] or "object"
    return f"{kind}-{stem}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def object_link(uri_bucket: str, key: str, endpoint_url: str | None, region: str) -> str:
    if endpoint_url:  # the local moto server serves objects over plain HTTP
        return f"{endpoint_url.rstrip('/')}/{uri_bucket}/{key}"
    return f"https://{region}.console.aws.amazon.com/s3/object/{uri_bucket}?prefix={key}"


def lineage_status(result: IngestResult) -> str:
    """loaded, skipped (loaded), superseded, failed (parked), ..."""
    if result.status == FAILED or (result.status == "skipped" and result.ledger):
        return f"{result.status} ({result.ledger})" if result.ledger else result.status
    return result.status


def lineage_row(result: IngestResult) -> dict[str, Any]:
    """One row: the object read, what the transform made of it, where it was staged, what the load wrote,
    how long each step took. The ingest-file run's lineage table and a row of the catch-up's."""
    source, stats, report, staged = result.source, result.stats, result.report, result.staged
    row: dict[str, Any] = {"source_object": result.uri, "etag": result.etag}
    if source is not None:
        row |= {
            "size_bytes": source.size,
            "batch_hour": source.batch_hour.isoformat(),
            "batch_hour_from": source.batch_hour_source,
        }
    row["status"] = lineage_status(result)
    if stats is not None:
        row |= {
            "records_read": stats.lines_read,
            "listings": stats.listings,
            "rejected": stats.rejected,
            "flagged": stats.flagged,
            "unknown_fields": sum(stats.unknown_fields.values()),
        }
    if report is not None and report.status == "loaded":
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
    if staged is not None:
        row |= {
            "staged_prefix": f"s3://{staged.bucket}/{staged.prefix}",
            "staged_rows": ", ".join(f"{table} {rows}" for table, rows in staged.rows.items()),
        }
    if result.batch:
        row["batch"] = result.batch
    row["seconds"] = round(result.seconds, 3)
    if result.step_seconds:
        row["steps"] = ", ".join(f"{step} {seconds:.3f}" for step, seconds in result.step_seconds.items())
    row["error"] = result.error[:300] if result.error else None
    return row


# msgspec names the field it could not decode as a JSON path: "... - at `$.data.realEstate_baseRent`".
_AT_DATA_FIELD = re.compile(r"at `\$\.data\.([A-Za-z0-9_]+)`")


def rejected_rows(rejected: pa.Table | None, limit: int = MAX_REJECTS_SHOWN) -> list[dict[str, Any]]:
    """The run's rejected lines for a table artifact: member, line, reason code, the detail (which names
    the field), and the offending value where the detail names a field of the line (read from the raw
    line, capped; none when masking kept no raw line). Never the whole raw line."""
    if rejected is None or rejected.num_rows == 0:
        return []
    rows = []
    for line in rejected.slice(0, limit).select(["member", "line_number", "reason", "raw_line"]).to_pylist():
        # reason is "<member> line <n>: <code>: <detail>" (berlin_rentals.transform)
        _, _, said = line["reason"].partition(f" line {line['line_number']}: ")
        code, _, detail = (said or line["reason"]).partition(": ")
        rows.append(
            {
                "member": line["member"],
                "line": line["line_number"],
                "reason": code,
                "detail": detail,
                "value": _offending_value(detail, line["raw_line"]),
            }
        )
    return rows


def _offending_value(detail: str, raw_line: str | None, cap: int = 80) -> str | None:
    match = _AT_DATA_FIELD.search(detail)
    if not match or not raw_line:
        return None
    try:
        value = json.loads(raw_line)["data"][match.group(1)]
    except (ValueError, KeyError, TypeError):
        return None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= cap else text[:cap] + "…"


def summary_markdown(result: IngestResult, closing: str) -> str:
    source, stats, report, staged = result.source, result.stats, result.report, result.staged
    lines = [f"### Ingest of {code(result.uri)}: **{text(lineage_status(result))}**", "", text(closing), ""]
    if source is not None:
        lines.append(
            f"- ETag {code(source.etag)}, {source.size:,} bytes, batch hour {source.batch_hour:%Y-%m-%d %H:00} "
            f"UTC (from the object's {source.batch_hour_source.replace('_', ' ')})"
        )
        if source.batch_hour_source == "name_in_future":
            lines.append(
                f"- **flag:** the name's hour lies more than a day after the upload "
                f"({source.last_modified:%Y-%m-%d %H:%M} UTC); rows are filed under the name's hour"
            )
    if stats is not None:
        reasons = ", ".join(f"{text(k)}: {v}" for k, v in sorted(stats.rejected_by_reason.items())) or "none"
        lines.append(
            f"- {stats.lines_read:,} lines read, {stats.listings:,} listings, {stats.rejected:,} rejected ({reasons})"
        )
        if stats.rejected_raw_omitted:
            lines.append(
                f"- {stats.rejected_raw_omitted:,} rejected lines kept without their raw text (the file's budget "
                "for raw text was spent); member and line point at them in the raw object"
            )
        if stats.flagged:
            flags = ", ".join(f"{text(k)}: {v}" for k, v in sorted(stats.flags_by_code.items()))
            lines.append(f"- {stats.flagged:,} listings loaded with quality flags ({flags})")
        if stats.unknown_fields:
            names = ", ".join(f"{code(k)} ({v})" for k, v in stats.unknown_fields.most_common(20))
            lines.append(f"- unknown fields, ignored: {names}")
    if report is not None and report.status == "loaded":
        lines.append(
            f"- fact_flats: {report.fact_inserted} inserted, {report.fact_updated} updated, "
            f"{report.fact_stale} older than the warehouse (snapshot only)"
        )
        lines.append(
            f"- dimensions: {report.dim_city_inserted} cities, {report.dim_address_inserted} addresses, "
            f"{report.dim_agency_inserted} agencies new; {report.dim_agency_updated} agencies updated"
        )
    elif report is not None:
        lines.append(f"- skipped: {text(report.reason)}")
    if staged is not None:
        lines.append(f"- staged in {code(f's3://{staged.bucket}/{staged.prefix}')}")
    if result.step_seconds:
        lines.append(
            "- steps: " + ", ".join(f"{text(step)} {seconds:.2f} s" for step, seconds in result.step_seconds.items())
        )
    lines.append(f"- took {result.seconds:.2f} s")
    return "\n".join(lines)
