"""A file's rejected lines: bounded rows and an exact count by reason (a file that is mostly garbage parked by
default, on the stack: tests/stack/test_rejected_rows.py) (issue #23: a 2,161-byte zip gave 1,048,576 rows of rejected_records and a peak
RSS of 771 MB, and with ETL_MAX_REJECT_RATIO unset they all loaded)."""

from __future__ import annotations

import tracemalloc

from berlin_rentals.archive import iter_lines
from berlin_rentals.synthetic import read_sample_records, zip_lines
from berlin_rentals.transform import MAX_UNKNOWN_KEYS, OTHER_UNKNOWN_KEYS, transform_lines

BAD_LINES = 200_000


def tiny_bomb(lines: int = BAD_LINES) -> bytes:
    """A zip of a few hundred bytes per hundred thousand short bad lines (they compress to almost nothing)."""
    return zip_lines("batch.json", [b"x"] * lines)


def test_a_tiny_zip_of_short_bad_lines_keeps_a_bounded_number_of_rows_and_counts_every_line():
    body = tiny_bomb()
    assert len(body) < 2_000
    tracemalloc.start()
    try:
        batch = transform_lines(iter_lines(body, "s3://b/raw/bomb.zip"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stats = batch.stats
    assert batch.rows("rejected_records") == 1000  # ETL_MAX_REJECTED_ROWS' default: the first ones
    assert batch.tables["rejected_records"].column("line_number").to_pylist() == list(range(1, 1001))
    assert stats.rejected == stats.lines_read == BAD_LINES and dict(stats.rejected_by_reason) == {"not_json": BAD_LINES}
    assert stats.rejected_rows_omitted == BAD_LINES - 1000
    assert peak < 32 << 20, peak  # the rows of the first thousand lines, not of all of them


def test_the_rows_kept_follow_the_setting():
    batch = transform_lines(iter_lines(tiny_bomb(50), "s3://b/raw/bomb.zip"), max_rejected_rows=7)
    assert batch.rows("rejected_records") == 7 and batch.stats.rejected == 50


def test_a_file_whose_lines_each_carry_a_new_key_counts_them_in_bounded_memory():
    import json

    record = read_sample_records()[0]
    lines = []
    for n in range(MAX_UNKNOWN_KEYS + 500):
        data = dict(record["data"], **{f"unheard_of_{n}": 1})
        lines.append(json.dumps({"ok": True, "data": data}).encode())
    stats = transform_lines(iter_lines(zip_lines("batch.json", lines), "s3://b/raw/keys.zip")).stats
    assert len(stats.unknown_fields) <= MAX_UNKNOWN_KEYS + 2  # the first thousand by name, the rest as one
    assert stats.unknown_fields[OTHER_UNKNOWN_KEYS] >= 500
