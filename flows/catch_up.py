"""Scheduled catch-up: ingest raw objects whose event was missed or whose load failed; report the gaps.

A run looks at the objects whose batch hour is in its window and those uploaded in it (a late file for an
old hour, whose event was lost), or with all_files at every object under the prefix (a reconciliation).

Runs hourly from prefect.yaml. Each missing file goes through the `ingest-file` flow's pipeline
(flows.ingest.run_ingest) up to its staged Parquet in one `stage-object` task run: the same steps, retries
and ledger attempts, and failures are counted and parked by the ingest itself, not here. The staged files
are then loaded in micro-batches (ETL_BATCH_MAX_FILES files or ETL_BATCH_MAX_RECORDS records), each one
`load-batch` task run and one warehouse transaction (flows/batches.py): a backfill commits once a batch, not
once a file, and on Redshift COPYs each table once a batch from a manifest. Under the batch's locks a file
an event-driven run loaded meanwhile drops out, so exactly once holds per file. With a batch size of 1 each
file is an `ingest-object` task run of the whole pipeline, as before. A task run per file rather than an
`ingest-file` subflow keeps Prefect's cost per file to a few state events; each file's lineage is a row of
one table artifact, with its batch. The task runs go to a pool of processes (ProcessPoolTaskRunner), so a
backfill uses every core, and a batch loads while the pool stages the next files.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from berlin_rentals.catch_up import (
    FAILED,
    LOADED,
    Outcome,
    RawObject,
    batch_is_full,
    catch_up_window,
    gaps_markdown,
    lineage_table,
    listing_prefix,
    outcome_of,
    plan_catch_up,
    summarise,
    take_batch,
)
from berlin_rentals.config import ConfigError, Settings
from berlin_rentals.errors import ObjectChanged
from berlin_rentals.ingest_result import STAGED, SUPERSEDED, IngestFailed, IngestResult
from berlin_rentals.lineage import lineage_row
from berlin_rentals.shares import raw_objects
from berlin_rentals.source import InvalidSource, SourceObject
from flows.batches import load_in_batches, stage_object
from flows.fan_out import fan_out
from flows.ingest import run_ingest
from tasks.batch import begin_batch_attempts
from tasks.catch_up import find_raw_objects, publish_report, read_ledger
from tasks.extract import confirm_versions
from tasks.pool import StagingPool, StagingProcessDied, record_process_death


# A flow's parameters are its form in the UI and its deployment's parameters, each named and documented
# on its own: the one function allowed more than 8 arguments (`make lint`, PLR0913).
@flow(name="catch-up", log_prints=True)
def catch_up(  # noqa: PLR0913
    since: datetime | None = None,
    until: datetime | None = None,
    max_concurrency: int = 4,
    prefix: str | None = None,
    all_files: bool = False,
    batch_max_files: int | None = None,
    fanout_above: int | None = None,
    files: list[dict[str, Any]] | None = None,
    bucket: str | None = None,
) -> dict[str, Any]:
    """Ingest the raw objects with a batch hour or an upload (LastModified) in [since, until) that the ledger
    does not show as loaded or parked (default window: the 24 hours before now, UTC). `prefix` narrows the
    listing to part of the raw prefix; `all_files` looks at every object under it, whatever its hour or
    upload (gaps are still counted over the window's hours only). `batch_max_files`: the files loaded in one
    warehouse transaction (default ETL_BATCH_MAX_FILES; 1: each file its own load). More files to ingest than
    `fanout_above` (default ETL_FANOUT_FILES) go out as runs of this deployment over a share of them each
    (ETL_FANOUT_RUN_FILES files), which this run waits for and reports on.

    `files` (a share; with `bucket`, the raw bucket it was listed from): ingest these object versions, each
    {"key", "etag", "last_modified", "size"}, instead of listing the prefix; one that is not a raw object
    version is refused with its reason and the others are ingested. Such a run never fans out."""
    logger = get_run_logger()
    settings = Settings.from_env()
    since, until = catch_up_window(since, until, now=datetime.now(UTC))
    prefix = listing_prefix(settings.raw_prefix, prefix)
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
    if batch_max_files is not None and batch_max_files < 1:
        raise ValueError(f"batch_max_files must be at least 1, not {batch_max_files}")

    refused: list[tuple[str, str]] = []
    if files is not None:
        objects, refused = given_objects(settings, bucket, files)
        ledger = read_ledger(settings, [o.key for o in objects])
        scope = f"a share of {len(files)} given files"
        since, until, all_files = share_window(objects, since, until)
    else:
        objects, ledger = find_raw_objects(settings, prefix, since, until, all_files)
        scope = "every file" if all_files else f"batch hour or upload in [{since.isoformat()}, {until.isoformat()})"
    plan = plan_catch_up(objects, ledger)
    logger.info(
        "s3://%s/%s, %s: %d files, %d to ingest, %d already loaded, %d parked",
        settings.raw_bucket,
        prefix,
        scope,
        len(objects),
        len(plan.to_ingest),
        len(plan.already_loaded),
        len(plan.parked),
    )

    batch_files = batch_max_files or settings.batch_max_files
    if files is None and len(plan.to_ingest) > (fanout_above or settings.fanout_files):
        outcomes, lineage = fan_out(settings, plan.to_ingest, max_concurrency, batch_files, settings.fanout_run_files)
    else:
        outcomes, lineage = ingest_all(
            settings, plan.to_ingest, max_concurrency, batch_files, settings.batch_max_records
        )

    # The ingests wrote the ledger rows of the files they ingested (loaded, failed, parked): ask it rather
    # than guess from outcomes. The rows of the others are as the listing found them.
    ledger_after = ledger | read_ledger(settings, [o.key for o in plan.to_ingest])
    report = summarise(since, until, objects, plan, outcomes, ledger_after, everything=all_files)
    if files is not None:
        report |= {"scope": scope, "gaps": [], "refused": [f"{given}: {why}" for given, why in refused]}
    publish_report(
        report,
        gaps_markdown(since, until, objects, ledger_after, report),
        lineage_table(outcomes, lineage, ledger_after),
        settings.raw_bucket,
    )
    logger.info(report_sentence(report))
    return report


def given_objects(
    settings: Settings, bucket: str | None, files: list[dict[str, Any]]
) -> tuple[list[RawObject], list[tuple[str, str]]]:
    """A share's files, each checked on its own: (the versions to look at, (entry, why) of those refused)."""
    if bucket is not None and bucket != settings.raw_bucket:
        # The share names the bucket its catch-up listed; this run's settings name another: each file would
        # be 'gone' there and parked, for a configuration error.
        raise ConfigError(
            f"this catch-up was given files of s3://{bucket}, but its ETL_RAW_BUCKET is {settings.raw_bucket!r}: "
            "a catch-up and the runs it fans out must share their settings (nothing was attempted)"
        )
    objects, refused = raw_objects(files, settings.raw_prefix)
    for given, why in refused:
        get_run_logger().warning("refused a file of the share, not attempted: %s: %s", given, why)
    return objects, refused


def share_window(
    objects: list[RawObject], since: datetime | None, until: datetime | None
) -> tuple[datetime, datetime, bool]:
    """A share has no window of its own: its report spans its files' hours (every file counts, no gaps)."""
    hours = [o.batch_hour for o in objects] or [datetime.now(UTC)]
    return since or min(hours), until or max(hours) + timedelta(hours=1), True


def report_sentence(report: dict[str, Any]) -> str:
    return (
        "catch-up of {scope}: {found} files found, {loaded_now} loaded now, {already_loaded} already loaded, "
        "{failed_now} failed now, {parked} parked, {gaps} hours of [{since}, {until}) without a file."
    ).format(**report | {"parked": len(report["parked"]), "gaps": len(report["gaps"])})


def ingest_all(
    settings: Settings,
    objects: list[RawObject],
    max_concurrency: int,
    batch_max_files: int = 1,
    batch_max_records: int = 50_000,
) -> tuple[list[Outcome], dict[tuple[str, str], dict[str, Any]]]:
    """Ingest the objects, at most `max_concurrency` at once, each in a process of a pool (the transform is
    CPU-bound Python: threads would share one core); a failure never stops the others. Returns each file's
    outcome, and its lineage row by (key, ETag) where the ingest got a result.

    With `batch_max_files` 1, each file is an ingest-object task run: the whole pipeline, its own load.
    Above 1, each is a stage-object task run (up to its staged Parquet), and this process loads the staged
    files in batches of at most that many files or `batch_max_records` records read (flows/batches.py): a
    batch loads as soon as it is full, while the pool goes on staging the next files."""
    run = _IngestAll(settings, objects, batch_max_files, batch_max_records)
    if objects:  # no pool otherwise: an hourly run that finds nothing to do starts no process
        with StagingPool(min(max_concurrency, len(objects))) as pool:
            if batch_max_files > 1:
                run.in_batches(pool)
            else:
                run.file_by_file(pool)
    return run.outcomes, run.lineage


class _IngestAll:
    """One ingest_all: the files' outcomes and lineage as they come back, the staged files waiting for a
    batch, and the batches loading."""

    def __init__(
        self, settings: Settings, objects: list[RawObject], batch_max_files: int, batch_max_records: int
    ) -> None:
        self.settings, self.objects = settings, objects
        self.batch_max_files, self.batch_max_records = batch_max_files, batch_max_records
        self.logger = get_run_logger()
        self.outcomes: list[Outcome] = []
        self.lineage: dict[tuple[str, str], dict[str, Any]] = {}
        self.by_key = {obj.key: obj for obj in objects}
        self.queued_at: dict[str, float] = {}
        self.waiting: list[IngestResult] = []  # staged, for the next batch
        self.loads: list[Future] = []
        run = str(flow_run.id or uuid.uuid4())
        # The attempt the ledger counts for each file, one per file and run: a file run again after its process
        # died (tasks/pool.py) runs under the same one, so it is not counted twice.
        self.attempt_of = {obj.key: f"{run}-{n}" for n, obj in enumerate(objects)}

    def record(self, obj: RawObject, result: Any) -> None:
        ingest = result.result if isinstance(result, IngestFailed) else result
        row = lineage_row(ingest) if isinstance(ingest, IngestResult) else None
        if row:
            self.lineage[(obj.key, obj.etag)] = row
        status, detail = outcome_of(result)
        # The file's own time in its process (the ingest's lineage seconds), else since it was queued.
        seconds = (row or {}).get("seconds") or time.perf_counter() - self.queued_at[obj.key]
        outcome = Outcome(obj, status, detail, seconds)
        self.outcomes.append(outcome)
        self.logger.log(
            logging.WARNING if status == FAILED else logging.INFO,
            "[%d/%d] %s: %s (%.2f s)%s%s",
            len(self.outcomes),
            len(self.objects),
            obj.key,
            status,
            outcome.seconds,
            f" {detail}" if status != LOADED else "",
            f" in batch {ingest.batch}" if isinstance(ingest, IngestResult) and ingest.batch else "",
        )

    def params_of(self, obj: RawObject) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "bucket": self.settings.raw_bucket,
            "key": obj.key,
            "etag": obj.etag,
            "attempt": self.attempt_of[obj.key],
        }

    def collect(self, pool: StagingPool) -> None:
        obj, result = pool.next_done()
        if isinstance(result, StagingProcessDied):
            result = record_process_death(self.settings, obj, self.attempt_of[obj.key], result)
        if isinstance(result, IngestResult) and result.status == STAGED:
            self.waiting.append(result)
            self.load_full_batches()
        else:
            self.record(obj, result)

    def file_by_file(self, pool: StagingPool) -> None:
        for obj in self.objects:
            pool.submit(ingest_object, self.params_of(obj), obj)
            self.queued_at[obj.key] = time.perf_counter()
        while pool.pending:
            self.collect(pool)

    def in_batches(self, pool: StagingPool) -> None:
        # The batches load one at a time in a thread of their own (in this run's context: their task runs
        # belong to it), so the pool goes on staging the next files meanwhile; their outcomes are recorded here.
        self.loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-batches")
        # A batch's files have their attempts counted in one transaction, just before they are staged: two
        # batches' worth in the pool at a time, so it never waits, and a crash leaves few attempts open.
        size = self.batch_max_files
        chunks = [self.objects[i : i + size] for i in range(0, len(self.objects), size)]
        try:
            while chunks and pool.pending <= size:
                self.submit_chunk(pool, chunks.pop(0))
            while pool.pending:
                self.collect(pool)
                while chunks and pool.pending <= size:
                    self.submit_chunk(pool, chunks.pop(0))
            self.load_full_batches(everything=True)
            self.record_loaded(list(futures_wait(self.loads).done))
        finally:
            self.loader.shutdown(wait=True)

    def submit_chunk(self, pool: StagingPool, chunk: list[RawObject]) -> None:
        settings = self.settings
        for obj in chunk:
            self.queued_at[obj.key] = time.perf_counter()
        # Confirmed before any ledger write: a version replaced since the listing is skipped, uncounted.
        confirmed = confirm_versions(settings, chunk, len(chunk))
        for obj in chunk:
            found = confirmed[obj.key]
            if isinstance(found, ObjectChanged | InvalidSource):
                status = SUPERSEDED if isinstance(found, ObjectChanged) else FAILED
                self.record(obj, IngestResult(status, settings.raw_bucket, obj.key, obj.etag, error=str(found)))
        chunk = [obj for obj in chunk if not isinstance(confirmed[obj.key], ObjectChanged | InvalidSource)]
        attempts = [(settings.raw_bucket, obj.key, obj.etag, self.attempt_of[obj.key]) for obj in chunk]
        parked = begin_batch_attempts(settings, attempts, len(attempts))
        for failure in parked:
            self.record(self.by_key[failure.result.key], failure)
        out_of_attempts = {failure.result.key for failure in parked}
        for obj in chunk:
            if obj.key not in out_of_attempts:
                found = confirmed[obj.key]
                version = {"version_id": found.version_id} if isinstance(found, SourceObject) else {}
                pool.submit(stage_object, self.params_of(obj) | version, obj)

    def load_full_batches(self, everything: bool = False) -> None:
        while self.waiting:
            batch, rest = take_batch(self.waiting, self.batch_max_files, self.batch_max_records)
            if (
                not everything
                and len(batch) == len(self.waiting)
                and not batch_is_full(batch, self.batch_max_files, self.batch_max_records)
            ):
                break  # not full yet: more files are on their way
            self.waiting[:] = rest
            self.loads.append(self.loader.submit(contextvars.copy_context().run, load_in_batches, self.settings, batch))
        self.record_loaded([load for load in self.loads if load.done()])

    def record_loaded(self, done: list[Future]) -> None:
        for load in done:
            self.loads.remove(load)
            for result in load.result():  # load_in_batches turns every failure into a file's outcome
                key = result.result.key if isinstance(result, IngestFailed) else result.key
                self.record(self.by_key[key], result)


@task(name="ingest-object", task_run_name="ingest {key}", cache_policy=NO_CACHE)
def ingest_object(settings: Settings, bucket: str, key: str, etag: str, attempt: str) -> IngestResult:
    """The ingest-file pipeline for one object version (flows.ingest.run_ingest), in this one task run.

    Its steps are task runs of their own, with their own retries; a failure after
    them is recorded in the ledger once (which parks the file after its last attempt), then raised as
    IngestFailed, which carries the file's result. No retries here: another attempt of the whole file
    would count as another attempt in the ledger. The run id the load records (rows, ledger, the load's
    session name) is `attempt`: unique per file and catch-up run. The result goes back to the catch-up, which may
    run this task in another process: without the staged tables it held in memory.
    """
    try:
        result = run_ingest(settings, bucket, key, etag, force=False, run_id=attempt)
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
    parser.add_argument(
        "--batch-max-files", type=int, help="files per load transaction (default ETL_BATCH_MAX_FILES; 1: one each)"
    )
    parser.add_argument("--json", action="store_true", help="print the whole report as one line of JSON")
    args = parser.parse_args()
    report = catch_up(args.since, args.until, args.max_concurrency, args.prefix, args.all_files, args.batch_max_files)
    print(json.dumps(report, default=str) if args.json else report_sentence(report))
