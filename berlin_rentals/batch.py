"""What the transform makes of one file: its tables, their counts, and the variant of the settings it was
made with (part of the ETag cache's key and of the staged prefix). Pure data, no I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa

from berlin_rentals.masking import Masker
from berlin_rentals.model import MODEL_FINGERPRINT, STAGED_TABLES, arrow_schema

# Bump when the transform's output changes for the same input: it is part of the cache key and of the
# staged prefix, so a fixed transform re-runs on files whose previous result is cached. A change of the
# staged columns needs no bump: MODEL_FINGERPRINT is in both too (output_variant).
TRANSFORM_VERSION = "3"


# Raw text kept for a file's rejected lines, in all (ETL_MAX_REJECTED_RAW_BYTES): a small zip of long bad
# lines would otherwise hold its whole inflated text in memory. Past it a rejected line keeps its row
# (member, line number, reason, size) without the text; the raw object still has every line.
MAX_REJECTED_RAW_BYTES = 16 * 1024**2
# Rejected lines a file keeps as rows of rejected_records (ETL_MAX_REJECTED_ROWS); past it they are counted
# (exactly, by reason), not kept (berlin_rentals/rejects.py).
MAX_REJECTED_ROWS = 1000


def output_variant(
    masker: Masker | None = None,
    pseudonyms: Masker | None = None,
    *,
    max_rejected_raw_bytes: int = MAX_REJECTED_RAW_BYTES,
    max_line_bytes: int | None = None,
    max_rejected_rows: int = MAX_REJECTED_ROWS,
) -> str:
    """What, besides a file's content, decides its transformed tables: the transform's version, the model's
    columns, the caps that change what is kept (the raw text kept of rejected lines; the line length past
    which a line is rejected, when the lines were read under one), and the salts of the masking and of the
    pseudonyms (by ETL_MASK_SALT_ID: nothing computed from a salt, which would let a reader test guesses). Part of the transform's cache key and of the staged
    prefix, so neither serves a batch made under other settings."""
    parts = [f"v{TRANSFORM_VERSION}", f"m{MODEL_FINGERPRINT}", f"r{max_rejected_raw_bytes}", f"n{max_rejected_rows}"]
    if max_line_bytes is not None:
        parts.append(f"l{max_line_bytes}")
    if masker is not None:
        parts.append(f"masked-{masker.salt_id}")
    if pseudonyms is not None:
        parts.append(f"keyed-{pseudonyms.salt_id}")
    return "-".join(parts)


@dataclass
class TransformStats:
    lines_read: int = 0
    listings: int = 0
    older_versions_in_file: int = 0
    rejected: int = 0
    rejected_by_reason: Counter = field(default_factory=Counter)
    flagged: int = 0  # listings loaded with at least one quality flag
    flags_by_code: Counter = field(default_factory=Counter)
    unknown_fields: Counter = field(default_factory=Counter)  # unknown key -> lines that carry it
    rejected_raw_omitted: int = 0  # rejected lines past the raw-text budget: row kept, raw_line NULL
    rejected_rows_omitted: int = 0  # rejected lines past ETL_MAX_REJECTED_ROWS: counted, no row kept

    def rejected_summary(self) -> str | None:
        """The ledger's rejected_by_reason: `code=count`, by code, comma-separated."""
        summary = ",".join(f"{code}={count}" for code, count in sorted(self.rejected_by_reason.items()) if count)
        return summary[:1024] or None


@dataclass
class Batch:
    """The tables of one batch, ready to stage: Arrow tables keyed by staged table name."""

    tables: dict[str, pa.Table]
    stats: TransformStats
    variant: str = field(default_factory=output_variant)  # output_variant of the settings it was made with

    def rows(self, table: str) -> int:
        return self.tables[table].num_rows


def row_arrays(name: str, rows: list[tuple]) -> list[pa.Array]:
    columns = zip(*rows, strict=True)
    return [pa.array(values, type=col.arrow) for values, col in zip(columns, STAGED_TABLES[name], strict=True)]


def record_batch(name: str, rows: list[tuple]) -> pa.RecordBatch:
    """An Arrow record batch of a staged table from its rows (tuples in the model's column order)."""
    return pa.RecordBatch.from_arrays(row_arrays(name, rows), schema=arrow_schema(name))


def staged_table(name: str, rows: Iterable[tuple]) -> pa.Table:
    """A staged table from its rows (tuples in the model's column order)."""
    schema = arrow_schema(name)
    rows = list(rows)
    if not rows:
        return schema.empty_table()
    return pa.Table.from_arrays(row_arrays(name, rows), schema=schema)
