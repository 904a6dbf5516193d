"""The rows a file's rejected lines keep in rejected_records, bounded whatever the file holds.

A 2 KB zip of one highly compressible member of short bad lines inflates to a million lines: kept as rows,
each with its raw text, they took 771 MB in the transform and a million rows in the warehouse. So a file
keeps the first `max_rows` rejected lines as rows (with their raw text while the file's raw-text budget
lasts); every rejected line is still counted, exactly and by reason (TransformStats, and the ledger's
rejected_count and rejected_by_reason), and the raw object keeps every byte of every line.
"""

from __future__ import annotations

from berlin_rentals.archive import SourceLine
from berlin_rentals.batch import MAX_REJECTED_RAW_BYTES, MAX_REJECTED_ROWS, TransformStats
from berlin_rentals.model import MAX_TEXT_BYTES
from berlin_rentals.values import RejectedLine, cap_text


class RejectedRows:
    """The rejected_records rows of one file, in line order, at most `max_rows`."""

    def __init__(
        self,
        stats: TransformStats,
        *,
        masked: bool,
        max_raw_bytes: int = MAX_REJECTED_RAW_BYTES,
        max_rows: int = MAX_REJECTED_ROWS,
    ) -> None:
        self.stats, self.masked = stats, masked
        self.raw_budget, self.max_rows = max_raw_bytes, max_rows
        self.rows: list[tuple] = []

    def keep(self, line: SourceLine, exc: RejectedLine) -> None:
        stats = self.stats
        stats.rejected += 1
        stats.rejected_by_reason[exc.code] += 1
        if len(self.rows) >= self.max_rows:
            stats.rejected_rows_omitted += 1  # counted, not kept: the raw object has the line
            return
        # Masked warehouses keep no raw lines (they hold contact data); member and line number
        # still point at the line in the raw object, which stays in the raw bucket.
        raw_text = None
        if not self.masked:
            if min(len(line.raw), MAX_TEXT_BYTES) <= self.raw_budget:
                raw_text = cap_text(line.raw.decode("utf-8", "replace"))
                cost = len(raw_text.encode("utf-8", "surrogatepass"))  # replacement characters take 3 bytes
                if cost <= self.raw_budget:
                    self.raw_budget -= cost
                else:
                    raw_text = None
            if raw_text is None:
                stats.rejected_raw_omitted += 1
        reason = cap_text(f"{line.member} line {line.line_number}: {exc}", 2048)
        self.rows.append((line.member, line.line_number, reason, raw_text, len(line.raw)))
