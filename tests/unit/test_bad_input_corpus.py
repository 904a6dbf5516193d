"""Every kind of bad input in tests/corpus.py, and what happens to it."""

from __future__ import annotations

import pytest

from berlin_rentals.archive import BadArchive, iter_lines
from berlin_rentals.transform import transform_lines
from tests.corpus import cases

# The corpus runs with a small line limit, so "a line past the limit" stays cheap to build.
LIMITS = dict(max_member_bytes=32 << 20, max_line_bytes=8 << 20)


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.kind)
def test_each_kind_of_bad_input_has_its_stated_outcome(case):
    if case.outcome == "file":
        with pytest.raises(BadArchive, match=case.expect) as failure:
            transform_lines(iter_lines(case.body, "batch.zip", **LIMITS))
        assert "batch.zip" in str(failure.value)
        return
    batch = transform_lines(iter_lines(case.body, "batch.zip", **LIMITS))
    listings = {row["listing_id"] for row in batch.tables["fact_flats"].to_pylist()}
    rejected = batch.tables["rejected_records"].to_pylist()
    if case.outcome == "reject":
        assert listings == {56906504, 56906505}, "the good lines around the bad one must still load"
        assert len(rejected) == 1
        assert rejected[0]["line_number"] == 2 and rejected[0]["member"] == "batch.json"
        assert rejected[0]["reason"].startswith(f"batch.json line 2: {case.expect}:"), rejected[0]["reason"]
    else:
        assert rejected == [] and listings == {56906504, 56906505}
        # The odd line shares line 1's listing and modification; the later line wins a tie, so the
        # row that landed is the odd line itself.
        flat = next(r for r in batch.tables["fact_flats"].to_pylist() if r["listing_id"] == 56906504)
        assert flat["source_line"] == 2
        assert flat["description_note"] is None or len(flat["description_note"].encode()) <= 65535
        if case.outcome == "flag":
            assert flat["quality_flags"] == case.expect
            assert batch.stats.flagged == 1 and batch.stats.flags_by_code == {case.expect: 1}
        else:
            assert flat["quality_flags"] is None and batch.stats.flagged == 0
    assert dict(batch.stats.unknown_fields) == {key: 1 for key in case.unknown}


def test_the_corpus_covers_at_least_twenty_kinds():
    kinds = [c.kind for c in cases()]
    assert len(kinds) == len(set(kinds)) >= 20
