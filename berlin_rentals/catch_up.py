"""Catch-up planning, pure: which raw objects in a window still need loading, and which hours have no file."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from berlin_rentals.source import batch_hour_from_key

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class RawObject:
    key: str
    etag: str
    size: int
    last_modified: datetime

    @property
    def batch_hour(self) -> datetime:
        return batch_hour_from_key(self.key) or self.last_modified.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass
class Plan:
    to_ingest: list[RawObject] = field(default_factory=list)
    already_loaded: list[RawObject] = field(default_factory=list)
    parked: list[RawObject] = field(default_factory=list)


def floor_hour(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def hours_in(since: datetime, until: datetime) -> list[datetime]:
    """The whole hours h with since <= h < until."""
    hours, hour = [], floor_hour(since)
    if hour < since.astimezone(UTC):
        hour += HOUR
    while hour < until:
        hours.append(hour)
        hour += HOUR
    return hours


def in_window(objects: list[RawObject], since: datetime, until: datetime) -> list[RawObject]:
    return [o for o in objects if since <= o.batch_hour < until]


def plan_catch_up(objects: list[RawObject], ledger: dict[tuple[str, str], str]) -> Plan:
    """ledger maps (key, etag) to its status. Loaded and parked versions are left alone; the rest is ingested."""
    plan = Plan()
    for obj in sorted(objects, key=lambda o: (o.batch_hour, o.key)):
        status = ledger.get((obj.key, obj.etag))
        if status == "loaded":
            plan.already_loaded.append(obj)
        elif status == "parked":
            plan.parked.append(obj)
        else:  # never seen, failed, or a 'loading' row left by a crashed run
            plan.to_ingest.append(obj)
    return plan


def files_per_hour(objects: list[RawObject], hours: list[datetime]) -> dict[datetime, int]:
    counts = Counter(o.batch_hour for o in objects)
    return {hour: counts.get(hour, 0) for hour in hours}


def gaps(per_hour: dict[datetime, int]) -> list[datetime]:
    return [hour for hour, count in per_hour.items() if count == 0]


def bar_chart(per_hour: dict[datetime, int], width: int = 20) -> str:
    """One line per hour; runs of three or more empty hours collapse to one line."""
    lines, hours = [], list(per_hour)
    peak = max(per_hour.values(), default=0) or 1
    i = 0
    while i < len(hours):
        j = i
        while j < len(hours) and per_hour[hours[j]] == 0:
            j += 1
        if j - i >= 3:
            lines.append(f"{hours[i]:%Y-%m-%d %H:00} … {hours[j - 1]:%Y-%m-%d %H:00}  (no files, {j - i} hours)")
            i = j
            continue
        count = per_hour[hours[i]]
        bar = "█" * max(1, round(count / peak * width)) if count else "·"
        lines.append(f"{hours[i]:%Y-%m-%d %H:00}  {bar} {count}")
        i += 1
    return "\n".join(lines)
