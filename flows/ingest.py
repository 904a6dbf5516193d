"""Ingest one object version from the raw bucket into the warehouse, exactly once.

Triggered per S3 object by the event bridge or re-run from the Prefect UI. The catch-up runs the same
pipeline (`run_ingest`) for each missed file, in one task run per file instead of this flow.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from berlin_rentals.config import Settings
from berlin_rentals.errors import ObjectChanged, is_retryable
from berlin_rentals.source import InvalidSource, SourceObject, normalize_etag
from tasks.extract import extract, inspect_source
from tasks.lineage import record_lineage
from tasks.load import ledger_status, load, record_failure
from tasks.stage import stage
from tasks.transform import transform


# How run_ingest calls a step: the flow calls the task itself (a task run per step); the catch-up calls
# tasks.common.run_inline (the task's function with the task's own retries, inside its one task run).
StepCall = Callable[..., Any]
# Lineage of one ingest: (settings, source, stats, staged, report, status, seconds, error).
LineageSink = Callable[..., None]


def call_task(step, *args: Any, **kwargs: Any) -> Any:
    return step(*args, **kwargs)


def run_ingest(
    settings: Settings, bucket: str, key: str, etag: str | None, force: bool, run_id: str | None,
    call: StepCall = call_task, lineage: LineageSink | None = None,
) -> dict[str, Any]:
    """The pipeline for one object version: inspect, ledger check, extract, transform, stage, load, and the
    failure recording the ledger counts attempts (and parks) by. The one orchestration of both the
    `ingest-file` flow and the catch-up; `call` runs each step, `lineage` (default: the
    record-lineage task) receives what was read and written."""
    started = time.perf_counter()
    logger = get_run_logger()
    # Where this file's time went, step by step (retries included): returned with the result.
    step_seconds: dict[str, float] = {}

    def run_step(step, *args: Any, **kwargs: Any) -> Any:
        begun = time.perf_counter()
        try:
            return call(step, *args, **kwargs)
        finally:
            step_seconds[step.name] = step_seconds.get(step.name, 0.0) + time.perf_counter() - begun

    if lineage is None:
        def lineage(*args: Any) -> None:
            run_step(record_lineage, *args)

    try:
        source: SourceObject = run_step(inspect_source, settings, bucket, key, etag)
    except ObjectChanged as exc:
        logger.warning("skipping: %s", exc)
        return {"status": "superseded", "key": key, "etag": etag, "reason": str(exc)}
    except InvalidSource:
        # An untrusted key or ETag that fails validation never reaches the ledger (or any SQL).
        raise
    except Exception as exc:
        # No confirmed object: the ledger can only hold what the event named.
        expected = normalize_etag(etag) if etag else None
        if expected:
            run_step(record_failure, settings, bucket, key, expected, str(exc), not is_retryable(exc), run_id)
        raise

    if source.batch_hour_source == "name_in_future":
        logger.warning("%s: the name's hour %s lies more than a day after the upload (%s); flagged in the ledger",
                       source.uri, source.batch_hour.isoformat(), source.last_modified.isoformat())

    status = run_step(ledger_status, settings, source)
    if not force and status in ("loaded", "parked"):
        logger.info("%s (ETag %s) is %s per the ledger: nothing to do", source.uri, source.etag, status)
        lineage(settings, source, None, None, None, f"skipped ({status})", time.perf_counter() - started)
        return {"status": "skipped", "ledger": status, "key": source.key, "etag": source.etag,
                "step_seconds": _rounded(step_seconds)}

    stats = staged = report = None
    try:
        with tempfile.TemporaryDirectory(prefix="ingest-") as workdir:
            archive = run_step(extract, settings, source, Path(workdir))
            transform_run = transform.with_options(refresh_cache=True) if force else transform
            batch = run_step(transform_run, settings, source, archive)
            stats = batch.stats
            staged = run_step(stage, settings, source, batch)
            report = run_step(load, settings, source, staged, stats, force, run_id)
    except Exception as exc:
        status, attempts = run_step(
            record_failure, settings, source.bucket, source.key, source.etag, f"{type(exc).__name__}: {exc}",
            not is_retryable(exc), run_id,
        )
        logger.error("%s failed (attempt %d, ledger status %s): %s", source.uri, attempts, status, exc)
        lineage(settings, source, stats, staged, None, f"failed ({status})", time.perf_counter() - started, str(exc))
        raise

    seconds = time.perf_counter() - started
    lineage(settings, source, stats, staged, report, report.status, seconds)
    logger.info("%s: %s in %.2f s %s", source.uri, report.status, seconds, report.as_dict())
    return {"status": report.status, "key": source.key, "etag": source.etag, "seconds": round(seconds, 3),
            "records_read": stats.lines_read, "rejected": stats.rejected, **report.as_dict(),
            "step_seconds": _rounded(step_seconds)}


def _rounded(seconds: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 4) for name, value in seconds.items()}


@flow(name="ingest-file", log_prints=True)
def ingest_file(bucket: str, key: str, etag: str | None = None, force: bool = False) -> dict[str, Any]:
    """Load s3://bucket/key (the version with this ETag). `force=True` reloads it, or releases a parked file.

    Each step is a task run, and the run's lineage is a table, links and a summary (artifacts)."""
    settings = Settings.from_env()
    run_id = str(flow_run.id) if flow_run.id else None
    return run_ingest(settings, bucket, key, etag, force, run_id)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run one ingest in this process (outside a worker).")
    parser.add_argument("bucket")
    parser.add_argument("key")
    parser.add_argument("--etag")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    print(ingest_file(args.bucket, args.key, args.etag, args.force))
