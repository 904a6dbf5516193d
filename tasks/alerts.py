"""The Prefect events the ingest emits for the alerts (deployments/automations.py turns them into notifications).

Plain functions, not tasks: an event is sent in the background by Prefect's events worker and is never a
step worth retrying, nor a reason to fail a file. The resource is the object's s3:// URI, so an automation
matches one raw prefix with `s3://<bucket>/<prefix>*`, as the ingest-file trigger does.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from berlin_rentals.batch import TransformStats
from berlin_rentals.ingest_result import IngestResult

FILE_PARKED = "rentals.file.parked"
REJECTS_ABOVE_RATIO = "rentals.file.rejects-above-ratio"
# A resource label is for matching and short display; the payload keeps the longer text.
_LABEL_CHARS = 500
_PAYLOAD_CHARS = 4000

logger = logging.getLogger(__name__)


def reject_ratio(stats: TransformStats) -> float:
    """The rejected share of a file's lines (0 for a file without lines)."""
    return stats.rejected / stats.lines_read if stats.lines_read else 0.0


def _emit(event: str, uri: str, labels: dict[str, str], payload: dict[str, Any], occurred: datetime | None) -> None:
    from prefect.events import emit_event

    try:
        emit_event(
            event,
            resource={"prefect.resource.id": uri, **labels},
            payload=payload,
            occurred=occurred,
        )
    except Exception as exc:  # noqa: BLE001 - an alert lost is logged; the file's outcome stands
        logger.warning("event %s for %s was not emitted: %r", event, uri, exc)


def emit_file_parked(result: IngestResult, parked_after: datetime) -> None:
    """`parked_after`: a moment before the ledger's parked_at, so `flows.release --since` from the event's
    time is sure to include this version."""
    error = result.error or ""
    key = result.key
    uri = f"s3://{result.bucket}/{key}"
    attempts = str(result.attempts or 0)
    _emit(
        FILE_PARKED,
        uri,
        {"etag": result.etag or "", "attempts": attempts, "reason": error[:_LABEL_CHARS]},
        {
            "bucket": result.bucket,
            "key": key,
            "etag": result.etag,
            "attempts": result.attempts,
            "error": error[:_PAYLOAD_CHARS],
        },
        parked_after,
    )


def emit_rejects_above_ratio(
    bucket: str, key: str, etag: str, stats: TransformStats, alert_ratio: float, parked: bool
) -> None:
    ratio = reject_ratio(stats)
    reasons = ", ".join(f"{code} {n}" for code, n in stats.rejected_by_reason.most_common(5))
    _emit(
        REJECTS_ABOVE_RATIO,
        f"s3://{bucket}/{key}",
        {
            "etag": etag,
            "rejected": str(stats.rejected),
            "lines": str(stats.lines_read),
            "ratio": f"{ratio:.4f}",
            "alert-ratio": f"{alert_ratio:.4f}",
            # Emitted before the load: true, parked instead (ETL_MAX_REJECT_RATIO); false, its good lines go on to load
            "parked": "true" if parked else "false",
            "reasons": reasons[:_LABEL_CHARS],
        },
        {
            "bucket": bucket,
            "key": key,
            "etag": etag,
            "rejected": stats.rejected,
            "lines": stats.lines_read,
            "ratio": ratio,
            "rejected_by_reason": dict(stats.rejected_by_reason),
        },
        None,
    )
