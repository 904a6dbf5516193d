"""Hourly batches derived from the real sample: same keys and quirks, other hours, rents and versions.

Used by `make demo`, the tests and the benchmark, so they all run on data shaped like production's.
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from berlin_rentals.config import SampleSettings


def sample_zip() -> Path:
    """The real sample batch: ETL_SAMPLE_ZIP, else ../shared/data/ beside the clone (read at each call)."""
    return SampleSettings.from_env().path()


def __getattr__(name: str) -> Path:
    # SAMPLE_ZIP, as the tests, the demo and the benchmarks import it: the setting as it is at that import.
    if name == "SAMPLE_ZIP":
        return sample_zip()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_MONEY_KEYS = (
    "realEstate_baseRent",
    "realEstate_totalRent",
    "realEstate_calculatedTotalRent",
    "realEstate_serviceCharge",
)


def batch_name(hour: datetime) -> str:
    return f"immobilienscout24_berlin_{hour:%Y%m%d_%H}"


def read_sample_records(path: Path | None = None) -> list[dict]:
    path = sample_zip() if path is None else path
    with zipfile.ZipFile(path) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".json"))
        return [json.loads(line) for line in archive.read(member).splitlines() if line.strip()]


def _iso_millis(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _scaled(value: int | float, factor: float) -> int | float:
    scaled = (Decimal(str(value)) * Decimal(str(factor))).quantize(Decimal("0.01"))
    return float(scaled) if scaled != scaled.to_integral() else int(scaled)


def revise(record: dict, *, rent_factor: float, modified: datetime) -> dict:
    """A later version of a listing: rents scaled, `modification` moved to `modified`."""
    data = dict(record["data"])
    for key in _MONEY_KEYS:
        if key in data:
            data[key] = _scaled(data[key], rent_factor)
    data["modification"] = _iso_millis(modified)
    data["realEstate_lastModificationDate"] = data["modification"]
    return {"ok": record.get("ok", True), "data": data}


def with_listing_id(record: dict, listing_id: int) -> dict:
    data = dict(record["data"])
    for key in ("id", "realEstate_id", "realEstate_externalId", "contactDetails_id"):
        if key in data:
            data[key] = str(listing_id)
    return {"ok": record.get("ok", True), "data": data}


def zip_lines(member: str, lines: list[bytes]) -> bytes:
    """The same lines always give the same bytes, so the same ETag: a fixed member timestamp, not the
    current time (which made every `make demo` upload new versions instead of skipping loaded ones)."""
    info = zipfile.ZipInfo(member, date_time=(2019, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o600 << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, b"\n".join(lines) + b"\n")
    return buffer.getvalue()


def zip_records(member: str, records: list[dict]) -> bytes:
    return zip_lines(member, [json.dumps(r, ensure_ascii=False).encode() for r in records])


def derived_batch(
    records: list[dict],
    hour: datetime,
    *,
    rent_factor: float,
    modified: datetime,
    seed: int = 0,
    new_listings: int = 0,
) -> bytes:
    """One hourly zip: every sample listing revised, plus `new_listings` with fresh ids."""
    rng = random.Random(seed)
    revised = [revise(r, rent_factor=rent_factor, modified=modified) for r in records]
    for n in range(new_listings):
        template = rng.choice(records)
        fresh = with_listing_id(template, 90_000_000 + seed * 1000 + n)
        revised.append(revise(fresh, rent_factor=rent_factor * rng.uniform(0.8, 1.2), modified=modified))
    return zip_records(f"{batch_name(hour)}.json", revised)
