"""The catch-up's micro-batches: stage each file on its own, load many in one transaction.

`stage_object` runs the ingest pipeline of one file up to its staged Parquet (in a process of the pool);
`load_in_batches` loads the staged files a batch at a time (`load-batch`, one task run and one warehouse
transaction per batch) while the pool goes on staging the next ones. A batch whose load fails after its
retries is split in halves until the failing file is alone; that file then runs the whole ingest
pipeline (flows.ingest.run_ingest), which records its failure and parks it after its attempts, as an
event-driven run would. So one file never holds up a backfill, and exactly once holds per file.
"""

from __future__ import annotations

from dataclasses import replace

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from berlin_rentals.config import Settings
from berlin_rentals.ingest_result import FAILED, LOADED, SKIPPED, SUPERSEDED, IngestFailed, IngestResult
from berlin_rentals.warehouse.load import BatchFile
from flows.ingest import run_ingest
from tasks.batch import load_batch
from tasks.load import end_attempt


@task(name="stage-object", task_run_name="stage {key}", cache_policy=NO_CACHE)
def stage_object(
    settings: Settings, bucket: str, key: str, etag: str, attempt: str, version_id: str | None = None
) -> IngestResult:
    """The ingest pipeline of one object version up to its staged Parquet (flows.ingest.run_ingest with
    until_staged), its attempt counted already (begin-attempts): STAGED, or superseded; a failure is recorded
    (and parks after its attempts) and raised as IngestFailed, as ingest-object does. It reads nothing of
    the warehouse: on Redshift a batch's load locks the ledger, and the pool goes on staging meanwhile."""
    try:
        result = run_ingest(
            settings,
            bucket,
            key,
            etag,
            force=False,
            run_id=attempt,
            version_id=version_id,
            until_staged=True,
        )
    except IngestFailed as exc:
        raise IngestFailed(exc.result.portable()) from exc.__cause__
    return result.portable()


def ingest_alone(settings: Settings, staged: IngestResult) -> IngestResult | IngestFailed:
    """The whole ingest pipeline for the file a failed batch was split down to, under the attempt its
    staging counted: its transform is a cache hit."""
    source = staged.source
    try:
        result = run_ingest(
            settings,
            staged.bucket,
            staged.key,
            staged.etag,
            force=False,
            run_id=staged.attempt,
            version_id=source.version_id if source else None,
        )
    except IngestFailed as exc:
        return IngestFailed(replace(exc.result.portable(), seconds=staged.seconds + exc.result.seconds))
    except Exception as exc:  # noqa: BLE001 - e.g. the ledger unreachable: this file's failure, not the backfill's
        error = f"{type(exc).__name__}: {exc}"
        return IngestFailed(replace(staged.portable(), status=FAILED, error=error, error_type=type(exc).__name__))
    return replace(result.portable(), seconds=staged.seconds + result.seconds)


def load_in_batches(settings: Settings, staged: list[IngestResult]) -> list[IngestResult | IngestFailed]:
    """Load these STAGED files as one batch; each file's outcome (an IngestResult, or IngestFailed for a
    file that failed alone). A failed batch (after load-batch's retries) is split in halves, down to one file,
    which then runs alone (ingest_alone)."""
    logger = get_run_logger()
    files = [BatchFile(r.source, r.staged, r.stats, r.attempt) for r in staged if r.source and r.staged and r.stats]
    try:
        report = load_batch(settings, files, len(files))
    except Exception as exc:  # noqa: BLE001 - any failure of the batch: isolate the file that causes it
        if len(staged) == 1:
            logger.warning("%s: its load failed in a batch (%s); loading it on its own", staged[0].uri, exc)
            return [ingest_alone(settings, staged[0])]
        half = len(staged) // 2
        logger.warning(
            "a batch of %d files failed to load (%s: %s); splitting it into %d and %d files",
            len(staged),
            type(exc).__name__,
            exc,
            half,
            len(staged) - half,
        )
        return load_in_batches(settings, staged[:half]) + load_in_batches(settings, staged[half:])
    outcomes: list[IngestResult | IngestFailed] = []
    for result in staged:
        load = report.reports.get((result.key, result.etag))
        if load is None:  # not in the batch (it had no staged tables): the pipeline of its own says why
            outcomes.append(ingest_alone(settings, result))
        elif load.status == LOADED:  # a correction too: the batch restated its key
            outcomes.append(replace(result, status=LOADED, report=load, batch=report.run_id))
        else:  # skipped (loaded or parked by another run meanwhile), or superseded by a newer version
            if result.source is not None and result.attempt:
                end_attempt(settings, result.source, result.attempt, load.status)
            ledger = load.ledger if load.status == SKIPPED else SUPERSEDED
            error = load.reason if load.status == SUPERSEDED else None
            outcomes.append(replace(result, status=load.status, ledger=ledger, error=error, batch=report.run_id))
    return outcomes
