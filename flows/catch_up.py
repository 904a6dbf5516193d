"""Scheduled catch-up: ingest raw objects whose event was missed or whose load failed; report the gaps.

A run looks at the objects whose batch hour is in its window and those uploaded in it (a late file for an
old hour, whose event was lost), or with all_files at every object under the prefix (a reconciliation).

Runs hourly from prefect.yaml. Each missing file is ingested by the `ingest-file` flow's pipeline
(flows.ingest.run_ingest) in one `ingest-object` task run: the same steps, retries and ledger, so the
ledger claim still guarantees exactly once if an event-driven run loads the same file meanwhile, and
failures are counted and parked by the ingest itself, not here. A task run per file rather than an
`ingest-file` subflow (a flow run, its parent task run, a task run per step, 9 lineage artifacts) keeps
Prefect's cost per file to a few state events; each file's lineage is a row of one table artifact.
The task runs go to a pool of processes (Prefect's ProcessPoolTaskRunner), so a backfill uses every core.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.logging import get_run_logger
from prefect.runtime import task_run
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from berlin_rentals.catch_up import (
    FAILED,
    LOADED,
    Outcome,
    RawObject,
    catch_up_window,
    gaps_markdown,
    lineage_table,
    listing_prefix,
    outcome_of,
    plan_catch_up,
    summarise,
)
from berlin_rentals.config import Settings
from berlin_rentals.ingest_result import IngestFailed, IngestResult
from berlin_rentals.lineage import lineage_row
from flows.ingest import run_ingest
from tasks.catch_up import find_raw_objects, publish_report, read_ledger
from tasks.common import run_inline


@flow(name="catch-up", log_prints=True)
def catch_up(
    since: datetime | None = None,
    until: datetime | None = None,
    max_concurrency: int = 4,
    prefix: str | None = None,
    all_files: bool = False,
) -> dict[str, Any]:
    """Ingest the raw objects with a batch hour or an upload (LastModified) in [since, until) that the ledger
    does not show as loaded or parked (default window: the 24 hours before now, UTC). `prefix` narrows the
    listing to part of the raw prefix; `all_files` looks at every object under it, whatever its hour or
    upload (gaps are still counted over the window's hours only)."""
    logger = get_run_logger()
    settings = Settings.from_env()
    since, until = catch_up_window(since, until, now=datetime.now(UTC))
    prefix = listing_prefix(settings.raw_prefix, prefix)
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")

    objects, ledger = find_raw_objects(settings, prefix, since, until, all_files)
    plan = plan_catch_up(objects, ledger)
    logger.info(
        "s3://%s/%s, %s: %d files, %d to ingest, %d already loaded, %d parked",
        settings.raw_bucket,
        prefix,
        "every file" if all_files else f"batch hour or upload in [{since.isoformat()}, {until.isoformat()})",
        len(objects),
        len(plan.to_ingest),
        len(plan.already_loaded),
        len(plan.parked),
    )

    outcomes, lineage = ingest_all(settings, plan.to_ingest, max_concurrency)

    # The ingests wrote the ledger rows of the files they ingested (loaded, failed, parked): ask it rather
    # than guess from outcomes. The rows of the others are as the listing found them.
    ledger_after = ledger | read_ledger(settings, [o.key for o in plan.to_ingest])
    report = summarise(since, until, objects, plan, outcomes, ledger_after, everything=all_files)
    publish_report(
        report,
        gaps_markdown(since, until, objects, ledger_after, report),
        lineage_table(outcomes, lineage, ledger_after),
        settings.raw_bucket,
    )
    logger.info(report_sentence(report))
    return report


def report_sentence(report: dict[str, Any]) -> str:
    return (
        "catch-up of {scope}: {found} files found, {loaded_now} loaded now, {already_loaded} already loaded, "
        "{failed_now} failed now, {parked} parked, {gaps} hours of [{since}, {until}) without a file."
    ).format(**report | {"parked": len(report["parked"]), "gaps": len(report["gaps"])})


def ingest_all(
    settings: Settings,
    objects: list[RawObject],
    max_concurrency: int,
) -> tuple[list[Outcome], dict[tuple[str, str], dict[str, Any]]]:
    """An ingest-object task run per object, at most `max_concurrency` at once, each in a process of a pool
    (the transform is CPU-bound Python: threads would share one core); a failure never stops the others.
    Returns each file's outcome, and its lineage row by (key, ETag) where the ingest got a result."""
    logger = get_run_logger()
    outcomes: list[Outcome] = []
    lineage: dict[tuple[str, str], dict[str, Any]] = {}
    if not objects:
        return outcomes, lineage  # no pool: an hourly run that finds nothing to do starts no process
    submitted: dict[Any, tuple[RawObject, float]] = {}
    workers = min(max_concurrency, len(objects))
    # One file at a time needs no other process (and no interpreter start-up of several seconds).
    runner = ProcessPoolTaskRunner(max_workers=workers) if workers > 1 else ThreadPoolTaskRunner(max_workers=1)
    with runner:
        for obj in objects:
            future = runner.submit(
                ingest_object, {"settings": settings, "bucket": settings.raw_bucket, "key": obj.key, "etag": obj.etag}
            )
            submitted[future] = (obj, time.perf_counter())
        for future in as_completed(list(submitted)):
            obj, queued = submitted[future]
            try:
                result = future.result(raise_on_failure=False)
            except Exception as exc:  # noqa: BLE001 - e.g. the API refused the task run: still one file's failure
                result = exc
            ingest = result.result if isinstance(result, IngestFailed) else result
            row = lineage_row(ingest) if isinstance(ingest, IngestResult) else None
            if row:
                lineage[(obj.key, obj.etag)] = row
            status, detail = outcome_of(result)
            # The file's own time in its process (the ingest's lineage seconds), else since it was queued.
            outcome = Outcome(obj, status, detail, (row or {}).get("seconds") or time.perf_counter() - queued)
            outcomes.append(outcome)
            logger.log(
                logging.WARNING if status == FAILED else logging.INFO,
                "[%d/%d] %s: %s (%.2f s)%s",
                len(outcomes),
                len(objects),
                obj.key,
                status,
                outcome.seconds,
                f" {detail}" if status != LOADED else "",
            )
    return outcomes, lineage


@task(name="ingest-object", task_run_name="ingest {key}", cache_policy=NO_CACHE)
def ingest_object(settings: Settings, bucket: str, key: str, etag: str) -> IngestResult:
    """The ingest-file pipeline for one object version (flows.ingest.run_ingest), in this one task run.

    Its steps retry as their tasks do (run_inline: same retries, delays, condition); a failure after
    them is recorded in the ledger once (which parks the file after its last attempt), then raised as
    IngestFailed, which carries the file's result. No retries here: another attempt of the whole file
    would count as another attempt in the ledger. The run id the load records (rows, ledger, the load's
    session name) is this task run's: unique per file. The result goes back to the catch-up, which may
    run this task in another process: without the staged tables it held in memory.
    """
    try:
        result = run_ingest(settings, bucket, key, etag, force=False, run_id=str(task_run.id), call=run_inline)
    except IngestFailed as exc:
        raise IngestFailed(exc.result.portable()) from exc.__cause__
    return result.portable()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run one catch-up in this process (outside a worker).")
    parser.add_argument("--since", type=datetime.fromisoformat)
    parser.add_argument("--until", type=datetime.fromisoformat)
    parser.add_argument("--max-concurrency", type=int, default=4)
    parser.add_argument("--prefix")
    parser.add_argument(
        "--all",
        action="store_true",
        dest="all_files",
        help="look at every object under the prefix, whatever its batch hour or upload (a full reconciliation)",
    )
    parser.add_argument("--json", action="store_true", help="print the whole report as one line of JSON")
    args = parser.parse_args()
    report = catch_up(args.since, args.until, args.max_concurrency, args.prefix, args.all_files)
    print(json.dumps(report, default=str) if args.json else report_sentence(report))
