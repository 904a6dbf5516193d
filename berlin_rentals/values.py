"""A listing's values as the warehouse holds them: what a source value means (sentinels, flags, lists,
pictures), the ranges a number must fit, and text capped to what a column holds. Pure functions, shared
by the decode of a line (berlin_rentals/listing.py) and the transform (berlin_rentals/transform.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache

import msgspec

from berlin_rentals.model import MAX_TEXT_BYTES

# Values that real records use for "missing" (see shared/data/README.md).
SENTINELS = frozenset({"", "NO_INFORMATION", "NOT_APPLICABLE"})
TRUE_VALUES = frozenset({"true", "TRUE", "True", "YES", "Y"})
FALSE_VALUES = frozenset({"false", "FALSE", "False", "NO", "N"})

Text = str | int | float | None
Flag = str | bool | None


class RejectedLine(ValueError):
    """A line that cannot become a listing. `code` is stable; the message says why, for a person."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


CENT = Decimal("0.01")
DEGREE_STEP = Decimal("1E-7")
MONEY_LIMIT = Decimal("1E10")
AREA_LIMIT = Decimal("1E8")
ROOMS_LIMIT = Decimal("1E4")
DEGREES_LIMIT = Decimal("1E3")

# Values a flat to rent in Berlin cannot plausibly have. They still load (the source said so, and a
# range check is a judgement, not a fact), but the row carries the reason in `quality_flags`, so
# analysts can filter it and the ledger counts it per file. Negative amounts are flagged apart.
PLAUSIBLE_RANGES: dict[str, tuple[Decimal | None, Decimal | None]] = {
    "base_rent": (Decimal("1"), Decimal("30000")),
    "total_rent": (Decimal("1"), Decimal("40000")),
    "calculated_total_rent": (Decimal("1"), Decimal("40000")),
    "service_charge": (Decimal("0"), None),
    "heating_costs": (Decimal("0"), None),
    "living_space": (Decimal("5"), Decimal("1000")),
    "number_of_rooms": (Decimal("0.5"), Decimal("30")),
}


def listing_id(value: str | int) -> int:
    """Listing ids are digit strings; anything else cannot key a listing."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        number = int(value)
    else:
        raise RejectedLine("bad_id", f"`data.id` {str(value)[:40]!r} is not a numeric listing id")
    if not 0 < number < 2**63:
        raise RejectedLine("bad_id", f"`data.id` {number} is out of range")
    return number


def text(value: Text) -> str | None:
    """Free text and enums: sentinels and blanks are missing; numbers become their text."""
    if value is None:
        return None
    if not isinstance(value, str):
        return str(value)
    if value in SENTINELS:
        return None
    stripped = value.strip()
    return stripped or None


def checked_decimal(value: Decimal | None, field_name: str, limit: Decimal, step: Decimal = CENT) -> Decimal | None:
    if value is None:
        return None
    try:
        if not value.is_finite() or abs(value) >= limit:
            raise InvalidOperation
        return value.quantize(step, rounding=ROUND_HALF_EVEN)
    except InvalidOperation:
        raise RejectedLine("invalid_value", f"`{field_name}` {value} is out of range") from None


def quality_flags(values: dict[str, Decimal | None]) -> str | None:
    """The plausibility flags of one listing's amounts, comma-separated in a fixed order; None if none."""
    flags = []
    for name, (low, high) in PLAUSIBLE_RANGES.items():
        value = values.get(name)
        if value is None:
            continue
        if value < 0:
            flags.append(f"{name}_negative")
        elif (low is not None and value < low) or (high is not None and value > high):
            flags.append(f"{name}_implausible")
    return ",".join(flags) or None


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def checked_int32(value: int | None, field_name: str) -> int | None:
    if value is not None and not -(2**31) <= value < 2**31:
        raise RejectedLine("invalid_value", f"`{field_name}` {value} is out of range")
    return value


def cap_text(value: str | None, limit: int = MAX_TEXT_BYTES) -> str | None:
    """Cap at `limit` UTF-8 bytes without splitting a character; drop NULs PostgreSQL cannot store."""
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "")
    if len(value) * 4 > limit:
        encoded = value.encode("utf-8", "surrogatepass")
        if len(encoded) > limit:
            value = encoded[:limit].decode("utf-8", "ignore")
    return value


def capped_text(value, limit: int) -> str | None:
    """text() capped to `limit` bytes. The hot path of the transform (some 30 calls a listing): a plain
    string short enough that no cap can apply, the usual case, is settled without cap_text."""
    if value.__class__ is str and len(value) * 4 <= limit and value not in SENTINELS and "\x00" not in value:
        return value.strip() or None
    return cap_text(text(value), limit)


@lru_cache(maxsize=1024)
def _readable(raw: bytes) -> str | None:
    parts: list[str] = []

    def walk(value) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        else:
            item = text(value)
            if item is not None and item not in parts:
                parts.append(item)

    try:
        walk(msgspec.json.decode(raw))
    except RecursionError:  # nested past reading: not a list of values, and no reason to lose the listing
        return None
    return ", ".join(parts) or None


def readable_list(raw: msgspec.Raw | None) -> str | None:
    """A list field as text an analyst reads: `[{"firingType": "GAS"}, {"firingType": "OIL"}]` is "GAS, OIL".

    Every value in it, in order, once; sentinels left out; None when nothing is left. The same few lists
    recur in every batch, hence the cache."""
    return None if raw is None else _readable(bytes(raw))


def _holds_picture(value) -> bool:
    if isinstance(value, dict):
        kind = value.get("@xsi.type")
        if isinstance(kind, str) and kind.rpartition(":")[2] == "Picture":
            return True
        return any(_holds_picture(item) for item in value.values() if isinstance(item, dict | list))
    if isinstance(value, list):
        return any(_holds_picture(item) for item in value)
    return False


def has_pictures(title_picture_id: msgspec.Raw | None, attachments: msgspec.Raw | None) -> bool:
    """A title picture, or an attachment of type `common:Picture` (a floor plan or a PDF is not one).

    A listing without pictures has neither key (shared/data/README.md): absent is False, not unknown."""
    if title_picture_id is not None and bytes(title_picture_id) not in (b"null", b'""'):
        return True
    if attachments is None:
        return False
    try:
        return _holds_picture(msgspec.json.decode(attachments))
    except RecursionError:  # nested past reading: no attachment list a picture could be in
        return False
