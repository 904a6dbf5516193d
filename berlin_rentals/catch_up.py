"""Catch-up planning, pure (no I/O): the window, which raw objects still need loading, the gaps, the report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from berlin_rentals.ingest_result import FAILED, LOADED, SKIPPED, IngestFailed, IngestResult
from berlin_rentals.markdown import code, text
from berlin_rentals.source import batch_hour_from_key, validate_key

HOUR = timedelta(hours=1)
DEFAULT_WINDOW = timedelta(hours=24)


def as_utc(moment: datetime) -> datetime:
    """A naive time is read as UTC (as the batch hour in a file name is); an aware one is converted."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def floor_hour(moment: datetime) -> datetime:
    return as_utc(moment).replace(minute=0, second=0, microsecond=0)


def catch_up_window(since: datetime | None, until: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """[since, until) in UTC: until defaults to now, since to one day before until."""
    until = as_utc(until if until is not None else now)
    since = as_utc(since) if since is not None else until - DEFAULT_WINDOW
    if since > until:
        raise ValueError(f"the window is reversed: since {since.isoformat()} is after until {until.isoformat()}")
    return since, until


def listing_prefix(raw_prefix: str, prefix: str | None) -> str:
    """The raw prefix, or a sub-prefix of it: catch-up never lists (or ingests) outside the raw zone."""
    if not prefix:
        return raw_prefix
    return validate_key(prefix, raw_prefix)


@dataclass(frozen=True)
class RawObject:
    """One object version as a bucket listing shows it (key, normalised ETag, size, LastModified)."""

    key: str
    etag: str
    size: int
    last_modified: datetime

    @property
    def batch_hour(self) -> datetime:
        # The same rule as SourceObject.batch_hour, so the window agrees with the hour the load records.
        return batch_hour_from_key(self.key) or floor_hour(self.last_modified)


@dataclass(frozen=True)
class LedgerEntry:
    status: str
    attempts: int = 0
    error: str | None = None


Ledger = dict[tuple[str, str], LedgerEntry]


@dataclass
class Plan:
    to_ingest: list[RawObject] = field(default_factory=list)
    already_loaded: list[RawObject] = field(default_factory=list)
    parked: list[RawObject] = field(default_factory=list)


def hours_in(since: datetime, until: datetime) -> list[datetime]:
    """The whole hours h with since <= h < until."""
    since, until = as_utc(since), as_utc(until)
    hour = floor_hour(since)
    if hour < since:
        hour += HOUR
    hours = []
    while hour < until:
        hours.append(hour)
        hour += HOUR
    return hours


def in_window(objects: list[RawObject], since: datetime, until: datetime) -> list[RawObject]:
    since, until = as_utc(since), as_utc(until)
    return [o for o in objects if since <= o.batch_hour < until]


def due_objects(
    objects: list[RawObject], since: datetime, until: datetime, *, everything: bool = False
) -> list[RawObject]:
    """The objects a catch-up of [since, until) looks at: those whose batch hour is in it and those uploaded
    in it (LastModified). A file can arrive days after its hour, and if its event is lost (the bridge down,
    SQS's retention passed, a purged queue) only its upload time puts it in a scheduled run's window.
    `everything`: every object, whatever its hour or upload (a full reconciliation)."""
    if everything:
        return list(objects)
    since, until = as_utc(since), as_utc(until)
    return [o for o in objects if since <= o.batch_hour < until or since <= as_utc(o.last_modified) < until]


def plan_catch_up(objects: list[RawObject], ledger: Ledger) -> Plan:
    """Classify each listed version by its own ledger row (key and ETag): loaded and parked ones are left alone.

    Everything else is ingested: no row, 'failed' (the ingest itself parks it after its last attempt),
    'superseded' (an older content re-uploaded is the current object again) and 'loading' (a crashed
    run's leftover; were another run loading it right now, the ledger claim makes our ingest a no-op).
    """
    plan = Plan()
    for obj in sorted(objects, key=lambda o: (o.batch_hour, o.key)):
        entry = ledger.get((obj.key, obj.etag))
        if entry is not None and entry.status == "loaded":
            plan.already_loaded.append(obj)
        elif entry is not None and entry.status == "parked":
            plan.parked.append(obj)
        else:
            plan.to_ingest.append(obj)
    return plan


def _records(result: IngestResult) -> int:
    return result.stats.lines_read if result.stats else 0


def take_batch(
    waiting: list[IngestResult], max_files: int, max_records: int
) -> tuple[list[IngestResult], list[IngestResult]]:
    """(the next batch, the rest) from staged files in the order they came: at most `max_files` files and,
    past the first, no more than `max_records` records read. A file with the ETag of one already in the
    batch waits for the next (a batch's staged rows name their file by ETag)."""
    batch: list[IngestResult] = []
    rest: list[IngestResult] = []
    etags: set[str | None] = set()
    records = 0
    for result in waiting:
        fits = len(batch) < max_files and (not batch or records + _records(result) <= max_records)
        if fits and result.etag not in etags:
            batch.append(result)
            etags.add(result.etag)
            records += _records(result)
        else:
            rest.append(result)
    return batch, rest


def batch_is_full(batch: list[IngestResult], max_files: int, max_records: int) -> bool:
    return len(batch) >= max_files or sum(_records(r) for r in batch) >= max_records


def outcome_of(result: Any) -> tuple[str, str]:
    """(loaded|skipped|failed, detail) from what an ingest-object task run came to: its IngestResult, or
    the exception it raised (IngestFailed carries the cause as `Type: message`)."""
    if isinstance(result, IngestFailed):
        return FAILED, result.result.error or "failed"
    if isinstance(result, BaseException):
        return FAILED, f"{type(result).__name__}: {result}"
    if not isinstance(result, IngestResult):
        return FAILED, f"unexpected result {result!r}"
    if result.status == "loaded":
        return LOADED, ""
    if result.status == "skipped":
        return SKIPPED, f"ledger says {result.ledger}"
    if result.status == "superseded":  # replaced between our listing and its HEAD: the new version is its own file
        return SKIPPED, result.error or "superseded"
    return FAILED, result.error or result.status


def files_per_hour(objects: list[RawObject], hours: list[datetime]) -> dict[datetime, int]:
    counts = Counter(o.batch_hour for o in objects)
    return {hour: counts.get(hour, 0) for hour in hours}


def gaps(per_hour: dict[datetime, int]) -> list[datetime]:
    return [hour for hour, count in per_hour.items() if count == 0]


def hour_runs(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive hours as (first, last) pairs: [15:00, 16:00, 18:00] -> [(15:00, 16:00), (18:00, 18:00)]."""
    runs: list[tuple[datetime, datetime]] = []
    for hour in sorted(hours):
        if runs and hour - runs[-1][1] == HOUR:
            runs[-1] = (runs[-1][0], hour)
        else:
            runs.append((hour, hour))
    return runs


def _span(first: datetime, last: datetime) -> str:
    if first == last:
        return f"{first:%Y-%m-%d %H:00}"
    hours = int((last - first) / HOUR) + 1
    end = f"{last:%H:00}" if first.date() == last.date() else f"{last:%Y-%m-%d %H:00}"
    return f"{first:%Y-%m-%d %H:00} – {end} ({hours} h)"


def _bars(rows: list[tuple[str, int]], width: int, empty_run: int, unit: str) -> list[str]:
    peak = max((count for _, count in rows), default=0) or 1
    lines, i = [], 0
    while i < len(rows):
        j = i
        while j < len(rows) and rows[j][1] == 0:
            j += 1
        if j - i >= empty_run:  # a long empty stretch says one thing: nothing came
            lines.append(f"{rows[i][0]} … {rows[j - 1][0]}  no files ({j - i} {unit})")
            i = j
            continue
        label, count = rows[i]
        bar = "█" * max(1, round(count / peak * width)) if count else "·"
        lines.append(f"{label}  {bar} {count}")
        i += 1
    return lines


def bar_chart(per_hour: dict[datetime, int], width: int = 20, max_lines: int = 72) -> str:
    """Files per hour, one line an hour; runs of 3+ empty hours collapse to one line.

    A window that would still need more than `max_lines` lines is charted per day instead.
    """
    hourly = _bars([(f"{h:%Y-%m-%d %H:00}", n) for h, n in per_hour.items()], width, 3, "hours")
    if len(hourly) <= max_lines:
        return "\n".join(hourly)
    per_day: dict[str, int] = {}
    for hour, count in per_hour.items():
        per_day[f"{hour:%Y-%m-%d}"] = per_day.get(f"{hour:%Y-%m-%d}", 0) + count
    return "\n".join(["(files per day)"] + _bars(list(per_day.items()), width, 3, "days"))


@dataclass(frozen=True)
class Outcome:
    obj: RawObject
    status: str  # loaded | skipped | failed
    detail: str
    seconds: float


def summarise(
    since: datetime,
    until: datetime,
    objects: list[RawObject],
    plan: Plan,
    outcomes: list[Outcome],
    ledger_after: Ledger,
    *,
    everything: bool = False,
) -> dict[str, Any]:
    """The run's figures. Parked is read from the ledger after the run: the ingest decides who is parked.
    Gaps are the window's hours without a file, whatever else the run found (late files of older hours)."""
    by_status = Counter(o.status for o in outcomes)
    # Skipped because another run (an event's) loaded it meanwhile: it is loaded all the same.
    loaded_meanwhile = [o for o in outcomes if o.status == SKIPPED and _status(ledger_after, o.obj) == "loaded"]
    per_hour = files_per_hour(objects, hours_in(since, until))
    scope = (
        "every file under the prefix"
        if everything
        else f"batch hours and uploads in [{since.isoformat()}, {until.isoformat()})"
    )
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "scope": scope,
        "found": len(objects),
        "loaded_now": by_status[LOADED],
        "already_loaded": len(plan.already_loaded) + len(loaded_meanwhile),
        "failed_now": by_status[FAILED],
        "skipped_now": by_status[SKIPPED] - len(loaded_meanwhile),
        "parked": sorted(o.key for o in objects if _status(ledger_after, o) == "parked"),
        "failed": sorted(o.obj.key for o in outcomes if o.status == FAILED),
        "gaps": [hour.isoformat() for hour in gaps(per_hour)],
    }


def _status(ledger: Ledger, obj: RawObject) -> str | None:
    entry = ledger.get((obj.key, obj.etag))
    return entry.status if entry else None


def _keys(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def report_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The table artifact: one row per figure, with the keys that need someone's attention."""
    return [
        {"figure": "files found", "files": report["found"], "keys": ""},
        {"figure": "loaded now", "files": report["loaded_now"], "keys": ""},
        {"figure": "already loaded", "files": report["already_loaded"], "keys": ""},
        {"figure": "failed now", "files": report["failed_now"], "keys": _keys(report["failed"])},
        {"figure": "skipped now (changed or parked meanwhile)", "files": report["skipped_now"], "keys": ""},
        {"figure": "parked", "files": len(report["parked"]), "keys": _keys(report["parked"])},
        {"figure": "hours without a file", "files": len(report["gaps"]), "keys": ""},
    ]


def lineage_table(
    outcomes: list[Outcome],
    rows: dict[tuple[str, str], dict[str, Any]],
    ledger_after: Ledger,
) -> list[dict[str, Any]]:
    """One row per file this run ingested, by batch hour: key, ETag, status, then its lineage row (what was
    read and written; berlin_rentals.lineage.lineage_rows) when the ingest got as far as the object.

    A file without one (replaced since the listing, gone, or its run refused) still gets its row: the
    outcome, the ledger's status for a failure, and the error. Every row has the same columns."""
    table = []
    for outcome in sorted(outcomes, key=lambda o: (o.obj.batch_hour, o.obj.key)):
        obj = outcome.obj
        lineage = dict(rows.get((obj.key, obj.etag)) or {})
        lineage.pop("source_object", None)  # the key, in this run's bucket
        lineage.pop("etag", None)
        if "status" not in lineage:
            if outcome.status == FAILED:
                ledger = _status(ledger_after, obj)
                lineage |= {"status": f"{FAILED} ({ledger})" if ledger else FAILED, "error": outcome.detail or None}
            else:
                lineage["status"] = f"{outcome.status} ({outcome.detail})" if outcome.detail else outcome.status
        table.append({"key": obj.key, "etag": obj.etag, "status": lineage.pop("status")} | lineage)
    columns = list(dict.fromkeys(column for row in table for column in row))
    return [{column: row.get(column) for column in columns} for row in table]


def gaps_markdown(
    since: datetime,
    until: datetime,
    objects: list[RawObject],
    ledger_after: Ledger,
    report: dict[str, Any],
    max_gap_lines: int = 48,
) -> str:
    per_hour = files_per_hour(objects, hours_in(since, until))
    missing = hour_runs(gaps(per_hour))
    parked = [o for o in objects if _status(ledger_after, o) == "parked"]
    lines = [
        f"### Catch-up {since:%Y-%m-%d %H:%M} → {until:%Y-%m-%d %H:%M} UTC",
        "",
        f"{report['found']} files found: {report['loaded_now']} loaded now, {report['already_loaded']} already "
        f"loaded, {report['failed_now']} failed now, {len(report['parked'])} parked.",
        "",
        f"#### Hours with no file: {len(report['gaps'])}",
        "",
    ]
    lines += [f"- {_span(first, last)}" for first, last in missing[:max_gap_lines]] or ["none"]
    if len(missing) > max_gap_lines:
        lines.append(f"- … and {len(missing) - max_gap_lines} more stretches (all in the returned `gaps`)")
    if parked:
        lines += ["", "#### Parked (fix the cause, then re-run `ingest-file` with `force=true`)", ""]
        for obj in sorted(parked, key=lambda o: o.key):
            entry = ledger_after[(obj.key, obj.etag)]
            error = (entry.error or "").splitlines()[0][:200] if entry.error else ""
            lines.append(f"- {code(obj.key)} (ETag {code(obj.etag)}, {entry.attempts} attempt(s)): {text(error)}")
    lines += ["", "#### Files per hour", "", "```", bar_chart(per_hour) or "(empty window)", "```", ""]
    return "\n".join(lines)
