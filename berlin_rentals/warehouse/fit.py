"""Make every staged row fit the warehouse's columns before it is staged. Pure: no I/O.

A value the warehouse cannot hold (a 100-byte `heating_type` in a VARCHAR(64), a NUL PostgreSQL cannot
store, a number past its NUMERIC's precision, a NULL in a NOT NULL column) makes the COPY refuse the
whole file, and Redshift's Parquet COPY has no TRUNCATECOLUMNS. So each staged value is checked against
the model's own column types (berlin_rentals/model.py: VARCHAR lengths in UTF-8 bytes, as Redshift counts
them; NUMERIC precision and scale; integer widths; nullability): a listing with a value that does not fit
goes to rejected_records with the member, line and column, and the file's other listings load.

What is not a listing's own value is capped instead: a dimension row is shared by listings and its text
was already capped by the transform; a rejected line must always fit, or the line would be lost; a
member name is lineage (capped with a hash of the whole name, so two long names stay apart).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from berlin_rentals.batch import Batch
from berlin_rentals.listing import FIELD_SOURCE_KEYS as SOURCE_FIELDS
from berlin_rentals.model import STAGED_TABLES, Col, arrow_schema
from berlin_rentals.values import cap_text

# Part of the transform's cache key: a batch cached before a change here is fitted again.
FIT_VERSION = "1"
# Listings whose values are checked row by row: a value that does not fit rejects the listing.
_LISTING_TABLES = ("fact_flats", "flat_snapshots")
# Columns of the listing tables that describe where a row came from, not the listing: capped.
_LINEAGE_COLUMNS = {"source_member", "quality_flags"}
_MEMBER_HASH = 16  # hex digits of the full name's SHA-256 kept after a capped member name


def _int_bits(kind: sa.types.TypeEngine) -> int:
    return 64 if isinstance(kind, sa.BigInteger) else 16 if isinstance(kind, sa.SmallInteger) else 32


def _rows(mask) -> list[int]:
    mask = pc.fill_null(mask, False)
    return [] if not pc.any(mask).as_py() else pc.indices_nonzero(mask).to_pylist()


def _problems(table: pa.Table, col: Col) -> list[tuple[int, str, str]]:
    """(row, code, detail) for each value of one column the warehouse column cannot hold."""
    values = table.column(col.name)
    kind = col.sql()
    found: list[tuple[int, str, str]] = []
    if not col.nullable and values.null_count:
        found += [(i, "missing_value", f"`{col.name}` is empty") for i in _rows(pc.is_null(values))]
    if isinstance(kind, sa.String) and pa.types.is_string(values.type):
        found += _text_problems(values, kind)
    elif isinstance(kind, sa.Integer) and pa.types.is_integer(values.type):
        found += _integer_problems(values, kind)
    elif isinstance(kind, sa.Numeric) and not isinstance(kind, sa.Float) and kind.precision is not None:
        found += _numeric_problems(values, kind)
    return found


def _text_problems(values: pa.ChunkedArray, kind: sa.String) -> list[tuple[int, str, str]]:
    found = []
    if kind.length:
        sizes = pc.binary_length(values)
        for i in _rows(pc.greater(sizes, kind.length)):
            found.append((i, "value_too_long", f"is {sizes[i].as_py()} bytes, the warehouse holds {kind.length}"))
    for i in _rows(pc.match_substring(values, "\x00")):
        found.append((i, "not_storable", "contains a NUL character, which PostgreSQL cannot store"))
    return found


def _integer_problems(values: pa.ChunkedArray, kind: sa.Integer) -> list[tuple[int, str, str]]:
    bits = _int_bits(kind)
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if values.type.bit_width <= bits:  # a narrower Arrow type cannot overflow it
        return []
    rows = _rows(pc.or_(pc.less(values, low), pc.greater(values, high)))
    return [(i, "out_of_range", f"{values[i].as_py()} is outside [{low}, {high}]") for i in rows]


def _numeric_problems(values: pa.ChunkedArray, kind: sa.Numeric) -> list[tuple[int, str, str]]:
    digits = kind.precision - (kind.scale or 0)
    typed = values.type
    if pa.types.is_decimal(typed) and typed.precision - typed.scale <= digits:
        return []  # an Arrow decimal this narrow cannot overflow it
    limit = Decimal(10) ** digits
    return [
        (i, "out_of_range", f"{value} needs more than {digits} digits before the point")
        for i, value in enumerate(values.to_pylist())
        if value is not None and abs(Decimal(str(value))) >= limit
    ]


def misfits(batch: Batch) -> list[tuple[str, str, int, str, str]]:
    """(table, column, row, code, detail) for every staged value its warehouse column cannot hold; [] if all fit."""
    return [
        (name, col.name, row, code, detail)
        for name, cols in STAGED_TABLES.items()
        for col in cols
        for row, code, detail in _problems(batch.tables[name], col)
    ]


def _cap_member(name: str | None, limit: int) -> str | None:
    if name is None or len(name.encode("utf-8", "surrogatepass")) <= limit:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_MEMBER_HASH]
    return f"{cap_text(name, limit - _MEMBER_HASH - 4)}…#{digest}"


def _capped(table: pa.Table, name: str, columns: set[str] | None = None) -> pa.Table:
    """Text of these columns (all, by default) capped to its column's bytes, NULs dropped; the rest as is."""
    for index, col in enumerate(STAGED_TABLES[name]):
        kind = col.sql()
        if (columns is not None and col.name not in columns) or not isinstance(kind, sa.String):
            continue
        if not _problems(table, col):
            continue
        limit = kind.length or 2**31
        cap = _cap_member if col.name in ("member", "source_member") else cap_text
        fixed = [cap(v, limit) for v in table.column(col.name).to_pylist()]
        table = table.set_column(index, table.schema.field(index), pa.array(fixed, type=col.arrow))
    return table


def _source_field(column: str) -> str:
    field = SOURCE_FIELDS.get(column)
    return f"`{column}` (source `{field}`)" if field else f"`{column}`"


def fit_batch(batch: Batch) -> Batch:
    """The batch with every value fitting its warehouse column: listings that cannot fit moved to
    rejected_records (reason `<member> line <n>: <code>: <column> <detail>`), capped text elsewhere.
    Returns the batch itself when everything fits."""
    tables = dict(batch.tables)
    facts = tables["fact_flats"]
    bad: dict[int, tuple[str, str]] = {}  # listing id -> (code, detail), the first problem found
    for name in _LISTING_TABLES:
        table = tables[name]
        ids = table.column("listing_id").to_pylist() if table.num_rows else []
        for col in STAGED_TABLES[name]:
            if col.name in _LINEAGE_COLUMNS:
                continue
            for row, code, detail in _problems(table, col):
                bad.setdefault(ids[row], (code, f"{_source_field(col.name)} {detail}"))
    capped = {name: _capped(tables[name], name) for name in tables if name not in _LISTING_TABLES}
    capped["fact_flats"] = _capped(facts, "fact_flats", _LINEAGE_COLUMNS)
    capped["flat_snapshots"] = _capped(tables["flat_snapshots"], "flat_snapshots", _LINEAGE_COLUMNS)
    if not bad and all(capped[n] is tables[n] for n in tables):
        return batch

    stats = replace(
        batch.stats,
        rejected_by_reason=Counter(batch.stats.rejected_by_reason),
        flags_by_code=Counter(batch.stats.flags_by_code),
        unknown_fields=Counter(batch.stats.unknown_fields),
    )
    if bad:
        wanted = pa.array(list(bad), type=pa.int64())
        gone = pc.is_in(capped["fact_flats"].column("listing_id"), value_set=wanted)
        removed = capped["fact_flats"].filter(gone)
        rejects = []
        for row in removed.select(["listing_id", "source_member", "source_line", "quality_flags"]).to_pylist():
            code, detail = bad[row["listing_id"]]
            member, line = row["source_member"], row["source_line"]
            reason = cap_text(f"{member} line {line}: {code}: {detail}", 2048)
            rejects.append({"member": member, "line_number": line, "reason": reason})
            stats.rejected += 1
            stats.rejected_by_reason[code] += 1
            if row["quality_flags"]:
                stats.flagged -= 1
                stats.flags_by_code.subtract(row["quality_flags"].split(","))
        stats.flags_by_code = +stats.flags_by_code
        stats.listings -= removed.num_rows
        kept = capped["fact_flats"].filter(pc.invert(gone))
        capped["fact_flats"] = kept
        snapshots = capped["flat_snapshots"]
        capped["flat_snapshots"] = snapshots.filter(
            pc.invert(pc.is_in(snapshots.column("listing_id"), value_set=wanted))
        )
        # Only a listing that loads reaches the dimensions (as in the transform): drop the rows no kept
        # listing points at any more.
        addresses = capped["dim_address"].filter(
            pc.is_in(capped["dim_address"].column("address_id"), value_set=kept.column("address_id"))
        )
        capped["dim_address"] = addresses
        capped["dim_city"] = capped["dim_city"].filter(
            pc.is_in(capped["dim_city"].column("city_id"), value_set=addresses.column("city_id"))
        )
        capped["dim_district"] = capped["dim_district"].filter(
            pc.is_in(capped["dim_district"].column("district_id"), value_set=addresses.column("district_id"))
        )
        capped["dim_agency"] = capped["dim_agency"].filter(
            pc.is_in(capped["dim_agency"].column("agency_id"), value_set=kept.column("agency_id"))
        )
        capped["dim_agent"] = capped["dim_agent"].filter(
            pc.is_in(capped["dim_agent"].column("agent_id"), value_set=kept.column("agent_id"))
        )
        added = pa.Table.from_pylist(
            [r | {"raw_line": None, "raw_line_bytes": None} for r in rejects], schema=arrow_schema("rejected_records")
        )
        capped["rejected_records"] = _capped(pa.concat_tables([capped["rejected_records"], added]), "rejected_records")
    return Batch(tables=capped, stats=stats, variant=batch.variant)
