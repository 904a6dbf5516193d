"""What one ingest of one object version came to, as one typed value, and how it reads to a person.

`flows.ingest.run_ingest` returns an `IngestResult` (or raises `IngestFailed`, which carries one); the
`ingest-file` flow turns it into the run's state message, tags, log line and artifacts, the catch-up into a
lineage row and an outcome. Everything here is pure: no Prefect, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from berlin_rentals.archive import BadArchive
from berlin_rentals.batch import TransformStats
from berlin_rentals.config import ConfigError
from berlin_rentals.errors import ObjectChanged, ObjectGone, RejectRatioExceeded
from berlin_rentals.source import InvalidSource, SourceObject, batch_hour_from_key
from berlin_rentals.staging import StagedBatch
from berlin_rentals.warehouse.load import LoadReport

LOADED, SKIPPED, SUPERSEDED, FAILED = "loaded", "skipped", "superseded", "failed"
# Transformed and staged, its load left to a batch (the catch-up's micro-batches: flows/catch_up.py).
STAGED = "staged"


@dataclass(frozen=True)
class IngestResult:
    """One ingest's outcome. `status` is loaded, skipped (the ledger already had it), superseded (the
    key holds another version now) or failed; `ledger` is the ledger's word that decided a skip, or
    the status a failure left (failed: will be retried; parked: will not)."""

    status: str
    bucket: str
    key: str
    etag: str | None
    source: SourceObject | None = None
    stats: TransformStats | None = None
    staged: StagedBatch | None = None
    report: LoadReport | None = None
    ledger: str | None = None
    attempts: int | None = None
    seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    # The id this ingest's attempt is counted under (berlin_rentals.warehouse.attempts), and the batch whose
    # transaction loaded it (its load-batch task run), when a batch did.
    attempt: str | None = None
    batch: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def parked(self) -> bool:
        return self.status == FAILED and self.ledger == "parked"

    def portable(self) -> IngestResult:
        """The same result without the staged tables held in memory (to send it to another process)."""
        staged = replace(self.staged, data=None) if self.staged is not None else None
        return replace(self, staged=staged)

    def as_dict(self) -> dict[str, Any]:
        """The flow run's return value: plain JSON, the same keys for every status."""
        stats = self.stats or TransformStats()
        counts = {
            name: value
            for name, value in (self.report or LoadReport(status="")).as_dict().items()
            if name not in ("status", "reason")
        }
        return counts | {
            "status": self.status,
            "key": self.key,
            "etag": self.etag,
            "ledger": self.ledger,
            "attempts": self.attempts,
            "seconds": round(self.seconds, 3),
            "records_read": stats.lines_read,
            "listings": stats.listings,
            "rejected": stats.rejected,
            "flagged": stats.flagged,
            "step_seconds": {name: round(value, 4) for name, value in self.step_seconds.items()},
            "error": self.error,
        }


class IngestFailed(Exception):
    """The ingest of one version failed; its failure is in the ledger (counted, or parked). `str()` is the
    cause as `Type: message`, which names the object."""

    def __init__(self, result: IngestResult) -> None:
        super().__init__(result.error or "ingest failed")
        self.result = result

    def __reduce__(self):
        # Pickled across the catch-up's process pool: rebuild from the result, not from args.
        return (type(self), (self.result,))


def run_name(key: str) -> str:
    """`ingest 20190113_19` for a batch named for its hour, else `ingest <file name>`; the key is
    untrusted, so the name keeps printable characters only and stays short."""
    hour = batch_hour_from_key(key)
    if hour is not None:
        return f"ingest {hour:%Y%m%d_%H}"
    name = re.sub(r"[^\w.\-+ ]", "_", key.rsplit("/", 1)[-1])[:60] or "object"
    return f"ingest {name}"


def run_tags(result: IngestResult) -> list[str]:
    """Tags to filter the runs list by: the outcome, and whether lines were rejected or flagged.

    Tags, not state names: the Prefect UI filters runs by a fixed list of state names, and its
    deployment page's default filter hides a run in a Completed state named anything else."""
    tags = [result.ledger if result.status == FAILED and result.ledger else result.status]
    if result.stats and result.stats.rejected:
        tags.append("rejects")
    if result.stats and result.stats.flagged:
        tags.append("flagged")
    return tags


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def closing_sentence(result: IngestResult) -> str:
    """The run's last log line, as a sentence; and what the HEAD noted about the version read, if anything."""
    note = result.source.note if result.source is not None else None
    sentence = _outcome_sentence(result)
    return f"{sentence} Note: {note}." if note else sentence


def _outcome_sentence(result: IngestResult) -> str:
    if result.status == LOADED and result.stats and result.report:
        stats, report = result.stats, result.report
        rejects = (
            f"{_plural(stats.rejected, 'line')} rejected ("
            + ", ".join(f"{k} {v}" for k, v in sorted(stats.rejected_by_reason.items()))
            + ")"
            if stats.rejected
            else "no line rejected"
        )
        flagged = f", {_plural(stats.flagged, 'listing')} flagged" if stats.flagged else ""
        return (
            f"{result.uri} loaded in {result.seconds:.2f} s: {_plural(stats.listings, 'listing')} from "
            f"{_plural(stats.lines_read, 'line')} ({report.fact_inserted} new, {report.fact_updated} updated, "
            f"{report.fact_stale} older than the warehouse kept as history), {rejects}{flagged}."
        )
    if result.status == SKIPPED:
        return (
            f"{result.uri} (ETag {result.etag}) was skipped: the ledger says {result.ledger}. "
            "Rerun with force=true to load it again."
        )
    if result.status == SUPERSEDED:
        return f"{result.uri} was skipped: {result.error}."
    return explain_failure(result)


def _fix(result: IngestResult) -> str:
    kind = result.error_type
    if kind == BadArchive.__name__:
        return (
            "upload a readable batch under the same key (a new ETag loads as a correction), or fix "
            "the object and rerun ingest-file with force=true"
        )
    if kind == ObjectGone.__name__:
        return "nothing to load unless the object is uploaded again (its upload starts a new run)"
    if kind == ConfigError.__name__:
        return "correct the setting in the worker's environment, then rerun (nothing was counted against the file)"
    if kind == InvalidSource.__name__:
        return "the event or parameters named an object this pipeline does not read; check bucket and key"
    if result.parked:
        return "find the cause in this run's log, fix it, then rerun ingest-file with force=true"
    return "none needed if it was transient: the hourly catch-up retries it"


def explain_failure(result: IngestResult) -> str:
    """One line for a failed ingest: what the file is, what went wrong, what the ledger did, the fix."""
    if result.ledger == "parked":
        outcome = (
            f"Parked after {_plural(result.attempts or 1, 'attempt')}: it will not be retried until it is released"
        )
    elif result.ledger == "failed":
        outcome = f"Attempt {result.attempts or 1} failed; the ledger will allow another"
    else:
        outcome = "Nothing was recorded in the ledger"
    # The error names the object too ("BadArchive: s3://b/k.zip: not a zip archive"): say it once.
    kind, _, message = (result.error or "unknown error").partition(": ")
    message = message.removeprefix(f"{result.uri}: ") or kind
    cause = f"{message} ({kind})" if message != kind else kind
    return f"{result.uri} could not be ingested: {cause}. {outcome}. Fix: {_fix(result)}."


# Errors the pipeline expects and names in its own words: their tracebacks tell an operator nothing. A
# file more than half garbage is parked by default (ETL_MAX_REJECT_RATIO 0.5): as ordinary as a bad zip.
EXPECTED_ERRORS = (BadArchive, InvalidSource, ConfigError, ObjectGone, ObjectChanged, RejectRatioExceeded)


def is_expected(exc: BaseException | None) -> bool:
    """An expected data or configuration error, or an IngestFailed caused by one."""
    if isinstance(exc, IngestFailed):
        return exc.result.error_type in {cls.__name__ for cls in EXPECTED_ERRORS}
    return isinstance(exc, EXPECTED_ERRORS)
