"""The raw text a batch's rejected lines keep: bounded per file, every line still counted."""

from __future__ import annotations

from berlin_rentals.archive import SourceLine
from berlin_rentals.transform import transform_lines


def test_the_raw_text_kept_for_rejected_lines_is_bounded_per_file_and_every_line_still_counted():
    """300 rejected lines of 60 KB (18 MB): each keeps its row (member, line, reason, size), but raw text only
    up to 16 MiB a file; the raw object still holds every line. Before, a 0.36 MB zip of such lines held
    250 MB of text and peaked at 855 MiB."""
    line = b'{"ok": true, "data": {"id": "1", "note": "' + b"a" * 60_000
    lines = (SourceLine("batch.json", n, line) for n in range(1, 301))
    batch = transform_lines(lines)
    rows = batch.tables["rejected_records"].to_pylist()
    assert len(rows) == batch.stats.rejected == 300
    assert all(r["raw_line_bytes"] == len(line) and r["reason"].startswith("batch.json line ") for r in rows)
    kept = [r for r in rows if r["raw_line"] is not None]
    assert sum(len(r["raw_line"].encode()) for r in kept) <= 16 << 20
    assert kept == rows[: len(kept)] and len(kept) == (16 << 20) // len(line)  # the first ones, whole
    assert batch.stats.rejected_raw_omitted == 300 - len(kept)


def test_a_smaller_budget_is_honoured():
    lines = [SourceLine("m.json", n, b"not json " * 100) for n in range(1, 11)]
    batch = transform_lines(lines, max_rejected_raw_bytes=2000)
    raw = batch.tables["rejected_records"].column("raw_line").to_pylist()
    assert [r is not None for r in raw] == [True, True] + [False] * 8
    assert batch.stats.rejected_raw_omitted == 8
