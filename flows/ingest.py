"""Ingest one object version from the raw bucket into the warehouse, exactly once.

Triggered per S3 object by the event bridge or re-run from the Prefect UI. The catch-up runs the same
pipeline (`run_ingest`) for each missed file, in one task run per file instead of this flow.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from berlin_rentals.config import ConfigError, Settings
from berlin_rentals.errors import (
    AttemptsExhausted,
    ObjectChanged,
    RejectRatioExceeded,
    is_config_error,
    is_retryable,
)
from berlin_rentals.ingest_result import (
    FAILED,
    SKIPPED,
    STAGED,
    SUPERSEDED,
    IngestFailed,
    IngestResult,
    closing_sentence,
    run_name,
    run_tags,
)
from berlin_rentals.s3 import s3_client
from berlin_rentals.source import InvalidSource, SourceObject, Version, normalize_etag
from berlin_rentals.staging import is_staged
from berlin_rentals.warehouse.attempts import Failure, attempt_id
from tasks.alerts import emit_file_parked, emit_rejects_above_ratio, reject_ratio
from tasks.extract import extract, inspect_source
from tasks.lineage import record_lineage
from tasks.load import begin_attempt, end_attempt, ledger_status, load, record_failure
from tasks.transform import cached_on_s3, transform_stage


def run_ingest(
    settings: Settings,
    bucket: str,
    key: str,
    etag: str | None,
    force: bool,
    run_id: str | None,
    version_id: str | None = None,
    until_staged: bool = False,
) -> IngestResult:
    """The pipeline for one object version: inspect, ledger check, extract, transform, stage, load, and the
    failure recording the ledger counts attempts (and parks) by. The one orchestration of both the
    `ingest-file` flow and the catch-up. Each step is a task run, with its retries from the one retry
    table (tasks.common.IO_STEP) and, for transform-stage, Prefect's cache keyed by the ETag.

    Returns the result of a load, a skip or a supersede; raises IngestFailed (with the result, after
    the ledger recorded the failure) when the version could not be ingested, and InvalidSource, before
    any I/O, for a bucket, key or ETag this pipeline does not read.

    `until_staged`: the caller read the ledger and began the attempt (under `run_id`) for a batch of files;
    stop once the file is staged and return it as STAGED, its attempt still open: the batch loads it with
    others (flows/catch_up.py) and ends the attempt in its transaction."""
    run = _FileIngest(settings, bucket, key, etag, force, run_id)
    source = run.inspect(version_id)
    if isinstance(source, IngestResult):
        return source
    # A batch's caller read the ledger and counted this attempt already (flows/catch_up.py: one transaction
    # per batch); its staging then never waits on the warehouse, whose loads on Redshift lock the ledger.
    if not until_staged:
        status = run.step(ledger_status, settings, source)
        if not force and status in ("loaded", "parked"):
            return run.result(SKIPPED, source=source, ledger=status)
    return run.stage_and_load(source, until_staged)


class _FileIngest:
    """One run of the pipeline over one version: what its steps share (the settings, where the time went,
    the attempt the ledger counts) and how a failure ends it."""

    def __init__(
        self, settings: Settings, bucket: str, key: str, etag: str | None, force: bool, run_id: str | None
    ) -> None:
        self.started = time.perf_counter()
        # Before any ledger write of this run: a parked alert's `flows.release --since` from it includes the file.
        self.began_at = datetime.now(UTC)
        self.settings = settings
        self.bucket, self.key, self.etag = bucket, key, etag
        self.force, self.run_id = force, run_id
        self.logger = get_run_logger()
        # Where this file's time went, step by step (retries included): part of the result.
        self.step_seconds: dict[str, float] = {}
        # The ledger counts this run's attempt under this id once, however often a step records it.
        self.attempt = attempt_id(run_id)

    def step(self, task, *args: Any, **kwargs: Any) -> Any:
        begun = time.perf_counter()
        try:
            return task(*args, **kwargs)
        finally:
            self.step_seconds[task.name] = self.step_seconds.get(task.name, 0.0) + time.perf_counter() - begun

    def result(self, status: str, **fields: Any) -> IngestResult:
        return IngestResult(
            status,
            self.bucket,
            self.key,
            self.etag,
            seconds=time.perf_counter() - self.started,
            step_seconds=dict(self.step_seconds),
            attempt=self.attempt,
            **fields,
        )

    def inspect(self, version_id: str | None) -> SourceObject | IngestResult:
        """The version's HEAD: the confirmed object, or the result of one replaced meanwhile (superseded)."""
        try:
            source: SourceObject = self.step(
                inspect_source, self.settings, self.bucket, self.key, self.etag, version_id or None
            )
        except ObjectChanged as exc:
            self.logger.warning("skipping: %s", exc)
            return self.result(SUPERSEDED, error=str(exc))
        except InvalidSource:
            # An untrusted key or ETag that fails validation never reaches the ledger (or any SQL).
            raise
        except Exception as exc:
            # No confirmed object: the ledger can only hold what the event named.
            expected = normalize_etag(self.etag) if self.etag else None
            raise self.give_up(exc, Version(self.bucket, self.key, expected) if expected else None) from exc
        if source.note:
            self.logger.warning("%s: %s", source.uri, source.note)
        self.etag = source.etag
        if source.batch_hour_source == "name_in_future":
            self.logger.warning(
                "%s: the name's hour %s lies more than a day after the upload (%s); flagged in the ledger",
                source.uri,
                source.batch_hour.isoformat(),
                source.last_modified.isoformat(),
            )
        return source

    def stage_and_load(self, source: SourceObject, until_staged: bool) -> IngestResult:
        settings = self.settings
        stats = staged = None
        try:
            # Counted before the heavy work: a process killed during it (out of memory) still used an attempt.
            exhausted = None if until_staged else self.step(begin_attempt, settings, source, self.attempt, self.force)
            if exhausted is None:
                with tempfile.TemporaryDirectory(prefix="ingest-") as workdir:
                    # Downloaded on a cache hit too (some 0.03 s a file): the hit saves the transform and the staging.
                    archive = self.step(extract, settings, source, Path(workdir))
                    stats, staged = self.transform(source, archive)
                    self.check_rejects(stats)
                    if until_staged:
                        return self.result(STAGED, source=source, stats=stats, staged=staged)
                    report = self.step(load, settings, source, staged, stats, self.force, self.run_id)
        except Exception as exc:
            raise self.give_up(exc, source.version, source=source, stats=stats, staged=staged) from exc
        if exhausted is not None:
            parked, attempts, error = exhausted
            if parked == "loaded":  # a concurrent run loaded it meanwhile
                return self.result(SKIPPED, source=source, ledger=parked)
            raise self.failed(AttemptsExhausted(error), (parked, attempts), source=source)
        end_attempt(settings, source, self.attempt, report.status)

        # A concurrent run of the same version may have loaded it first: the ledger claim said so. Or the
        # key has a newer version loaded by now (a late retry after a correction): refused as superseded.
        return self.result(
            report.status,
            source=source,
            stats=stats,
            staged=staged,
            report=report,
            ledger={SKIPPED: "loaded", SUPERSEDED: "superseded"}.get(report.status),
            error=report.reason if report.status == SUPERSEDED else None,
        )

    def transform(self, source: SourceObject, archive: Path):
        """transform-stage, from Prefect's cache when it holds this version's result and its Parquet is there."""
        settings = self.settings
        step = transform_stage.with_options(**cached_on_s3(settings), **({"refresh_cache": True} if self.force else {}))
        transformed = self.step(step, settings, source, archive)
        # A result from the cache (its tables not in memory) points at Parquet that may be gone since:
        # expired a moment before it, deleted by hand, or staged under another ETL_STAGING_PREFIX.
        if transformed.staged.data is None and not (
            transformed.staged.prefix.startswith(settings.staging_prefix)
            and is_staged(s3_client(settings), transformed.staged)
        ):
            self.logger.warning(
                "the cached result of %s points at s3://%s/%s, which is gone: transforming again",
                source.uri,
                transformed.staged.bucket,
                transformed.staged.prefix,
            )
            transformed = self.step(step.with_options(refresh_cache=True), settings, source, archive)
        return transformed.stats, transformed.staged

    def check_rejects(self, stats) -> None:
        """Alert above ETL_REJECT_ALERT_RATIO; park (raise) above ETL_MAX_REJECT_RATIO unless forced."""
        settings = self.settings
        ratio = reject_ratio(stats)
        over_max = settings.max_reject_ratio is not None and ratio > settings.max_reject_ratio
        if over_max and self.force:
            self.logger.warning(
                "%.1f%% of the lines rejected, above ETL_MAX_REJECT_RATIO=%s: loaded anyway (force)",
                100 * ratio,
                settings.max_reject_ratio,
            )
        parks = over_max and not self.force
        if ratio > settings.reject_alert_ratio:
            emit_rejects_above_ratio(self.bucket, self.key, self.etag, stats, settings.reject_alert_ratio, parked=parks)
        if parks:
            raise RejectRatioExceeded(
                f"{stats.rejected} of {stats.lines_read} lines rejected ({100 * ratio:.1f}%), above "
                f"ETL_MAX_REJECT_RATIO={settings.max_reject_ratio}: not loaded"
            )

    def give_up(self, exc: Exception, on: Version | None, **fields: Any) -> IngestFailed:
        """Record the failure of this run's attempt at that version (with the file's counts when the transform
        ran), and the result to raise.

        A configuration error (a setting, a permission, a credential) fails the run as loudly, but is not
        counted against the file and never parks it: every file would fail the same way until it is fixed."""
        error = f"{type(exc).__name__}: {exc}"
        if is_config_error(exc):
            if on is not None:
                try:
                    self.step(record_failure, self.settings, on, Failure(error, counted=False), self.attempt)
                except Exception as unrecorded:  # noqa: BLE001 - the warehouse may be what is misconfigured
                    self.logger.warning("the attempt's configuration error was not recorded: %r", unrecorded)
            return self.failed(exc if isinstance(exc, ConfigError) else ConfigError(error), None, **fields)
        failure = Failure(error, terminal=not is_retryable(exc), stats=fields.get("stats"))
        recorded = self.step(record_failure, self.settings, on, failure, self.attempt) if on else None
        return self.failed(exc, recorded, **fields)

    def failed(self, exc: Exception, recorded: tuple[str, int] | None, **fields: Any) -> IngestFailed:
        ledger, attempts = recorded or (None, None)
        outcome = self.result(
            FAILED,
            ledger=ledger,
            attempts=attempts,
            error=f"{type(exc).__name__}: {exc}",
            error_type=type(exc).__name__,
            **fields,
        )
        if outcome.parked:
            emit_file_parked(outcome, self.began_at)
        return IngestFailed(outcome)


def _run_name() -> str:
    return run_name(str(flow_run.parameters.get("key", "")))


def _mark_run(result: IngestResult) -> None:
    """Tag the run with its outcome (loaded, skipped, parked, rejects, ...) so the runs list filters by it."""
    if not flow_run.id:
        return
    with get_client(sync_client=True) as client:
        tags = set(client.read_flow_run(flow_run.id).tags) | set(run_tags(result))
        client.update_flow_run(flow_run.id, tags=sorted(tags))


@flow(name="ingest-file", flow_run_name=_run_name, log_prints=True)
def ingest_file(
    bucket: str, key: str, etag: str | None = None, force: bool = False, version_id: str | None = None
) -> dict[str, Any]:
    """Load one raw object version into the warehouse, exactly once.

    Each step is a task run; the run's lineage is a table, a summary and, when lines were rejected, a
    table of them (artifacts keyed by the file). The run's state message says what happened in one
    sentence; its tags (loaded, rejects, flagged, skipped, superseded, parked, failed) filter by it.

    Args:
        bucket: The raw bucket (any other is refused).
        key: The object's key under the raw prefix, e.g. raw/immobilienscout24_berlin_20190113_15.zip.
        etag: The version to load, from the S3 event; empty loads the object's current version.
        force: On: load this version again even though the ledger says it is loaded (its rows are
            replaced), or release a parked file (one parked for its rejects then loads despite
            ETL_MAX_REJECT_RATIO). Off: a version already loaded or parked is skipped.
        version_id: The S3 version id, from the event: that exact version is read even if the key was
            overwritten since. Empty: the version the HEAD finds (the current one).
    """
    settings = Settings.from_env()
    run_id = str(flow_run.id) if flow_run.id else None
    logger = get_run_logger()
    try:
        result = run_ingest(settings, bucket, key, etag, force, run_id, version_id=version_id)
    except IngestFailed as exc:
        result = exc.result
        sentence = closing_sentence(result)
        logger.error(sentence)
        _publish(settings, result, sentence)
        return Failed(message=sentence, data=exc)
    sentence = closing_sentence(result)
    logger.info(sentence)
    _publish(settings, result, sentence)
    return Completed(message=sentence, data=result.as_dict())


def _publish(settings: Settings, result: IngestResult, sentence: str) -> None:
    record_lineage(settings, result, sentence)
    _mark_run(result)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run one ingest in this process (outside a worker).")
    parser.add_argument("bucket")
    parser.add_argument("key")
    parser.add_argument("--etag")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--version-id")
    args = parser.parse_args()
    print(ingest_file(args.bucket, args.key, args.etag, args.force, args.version_id, return_state=True).message)
