"""Scheduled catch-up: ingest raw objects whose event was missed or whose load failed; report the gaps.

Runs hourly from prefect.yaml. Each missing file is ingested by the `ingest-file` flow as a subflow,
so the ledger claim still guarantees exactly once if an event-driven run loads the same file meanwhile.
"""

from __future__ import annotations

import contextvars
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger

from berlin_rentals.catch_up import RawObject, bar_chart, files_per_hour, gaps, hours_in, in_window, plan_catch_up
from berlin_rentals.config import Settings
from berlin_rentals.s3 import s3_client
from berlin_rentals.source import normalize_etag, validate_key
from berlin_rentals.warehouse.sql import statement
from flows.ingest import ingest_file
from tasks.common import IO_STEP, warehouse_engine


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@task(name="list-raw-objects", **IO_STEP)
def list_raw_objects(settings: Settings, prefix: str) -> list[RawObject]:
    objects = []
    paginator = s3_client(settings).get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=settings.raw_bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].lower().endswith(".zip"):
                objects.append(RawObject(item["Key"], normalize_etag(item["ETag"]), item["Size"], item["LastModified"]))
    return objects


@task(name="read-ledger", **IO_STEP)
def read_ledger(settings: Settings, prefix: str) -> dict[tuple[str, str], str]:
    with warehouse_engine(settings.warehouse_url).connect() as conn:
        rows = conn.execute(statement("ledger/select_ledger_for_bucket.sql", settings.warehouse_schema),
                            {"bucket": settings.raw_bucket, "key_prefix": _like_prefix(prefix)}).all()
    return {(row.key, row.etag): row.status for row in rows}


def _ingest_all(settings: Settings, objects: list[RawObject], max_concurrency: int) -> dict[str, str]:
    """Subflow per file, at most `max_concurrency` at once; one failure never stops the others."""
    logger = get_run_logger()
    outcome: dict[str, str] = {}
    total = len(objects)

    def ingest(numbered: tuple[int, RawObject]) -> None:
        n, obj = numbered
        started = time.perf_counter()
        state = ingest_file(settings.raw_bucket, obj.key, obj.etag, return_state=True)
        result = state.result(raise_on_failure=False)
        status = result.get("status", "?") if isinstance(result, dict) else "failed"
        outcome[obj.key] = status
        logger.info("[%d/%d] %s: %s (%.2f s)", n, total, obj.key, status, time.perf_counter() - started)

    with ThreadPoolExecutor(max_workers=max(1, max_concurrency)) as pool:
        # Prefect's run context and settings live in context variables: each task runs in its own
        # copy of this flow's context, taken here in the submitting thread.
        futures = [pool.submit(contextvars.copy_context().run, ingest, item) for item in enumerate(objects, start=1)]
        for future in futures:
            future.result()
    return outcome


@flow(name="catch-up", log_prints=True)
def catch_up(
    since: datetime | None = None, until: datetime | None = None, max_concurrency: int = 4, prefix: str | None = None,
) -> dict[str, Any]:
    """Ingest what is missing or failed among raw objects whose batch hour is in [since, until) (default: last 24 h)."""
    logger = get_run_logger()
    settings = Settings.from_env()
    until = _utc(until) if until else datetime.now(UTC)
    since = _utc(since) if since else until - timedelta(hours=24)
    prefix = validate_key(prefix, settings.raw_prefix) if prefix else settings.raw_prefix

    objects = in_window(list_raw_objects(settings, prefix), since, until)
    plan = plan_catch_up(objects, read_ledger(settings, prefix))
    logger.info("%d files in [%s, %s): %d to ingest, %d already loaded, %d parked",
                len(objects), since.isoformat(), until.isoformat(), len(plan.to_ingest),
                len(plan.already_loaded), len(plan.parked))

    outcome = _ingest_all(settings, plan.to_ingest, max_concurrency)

    ledger_after = read_ledger(settings, prefix)
    parked = sorted({o.key for o in objects if ledger_after.get((o.key, o.etag)) == "parked"})
    per_hour = files_per_hour(objects, hours_in(since, until))
    missing_hours = gaps(per_hour)
    report = {
        "since": since.isoformat(), "until": until.isoformat(),
        "found": len(objects),
        "loaded_now": sum(1 for s in outcome.values() if s == "loaded"),
        "already_loaded": len(plan.already_loaded) + sum(1 for s in outcome.values() if s == "skipped"),
        "failed_now": sum(1 for s in outcome.values() if s not in ("loaded", "skipped")),
        "parked": parked,
        "gaps": [h.isoformat() for h in missing_hours],
    }
    create_table_artifact(
        key="catch-up-report",
        table=[{k: (", ".join(v) if isinstance(v, list) else v) for k, v in report.items() if k != "gaps"}
               | {"gap_hours": len(missing_hours)}],
        description="Files found, loaded now, already loaded, failed and parked in the catch-up window",
    )
    create_markdown_artifact(
        key="catch-up-gaps",
        markdown=(f"### Catch-up {since:%Y-%m-%d %H:00} → {until:%Y-%m-%d %H:%M} UTC\n\n"
                  f"{len(missing_hours)} hour(s) without any file"
                  + (": " + ", ".join(f"{h:%Y-%m-%d %H:00}" for h in missing_hours[:48]) if missing_hours else "")
                  + (f" (+{len(missing_hours) - 48} more)" if len(missing_hours) > 48 else "")
                  + "\n\nParked (fix, then re-run `ingest-file` with force=true): "
                  + (", ".join(f"`{k}`" for k in parked) or "none")
                  + "\n\nFiles per hour:\n\n```\n" + bar_chart(per_hour) + "\n```\n"),
        description="Hours with no file, parked files, and files per hour",
    )
    return report
