"""Exactly once: PostgreSQL's fact merge is the shared one with the newest-wins rule inside (the loads for real,
on the stack: tests/stack/test_exactly_once.py).

Each test drives the one load, a file at a time (`load_staged_batch`), on the real PostgreSQL of the local stack with batches made from the
real sample's records. The concurrency tests run two loads in two threads, each on its own connection,
and pause one of them at a statement boundary (SQLAlchemy's `before_cursor_execute` on that load's own
engine: the driver call itself, nothing of ours replaced).
"""

from __future__ import annotations


def test_the_postgresql_fact_merge_is_the_shared_one_with_the_newest_wins_rule_inside():
    from berlin_rentals.warehouse.sql import statements

    *_, shared = statements("load/merge_into_fact_flats.sql", "wh")
    (conditional,) = statements("postgresql/merge_into_fact_flats.sql", "wh")
    condition = (
        "WHEN MATCHED AND (s.last_modified_at > wh.fact_flats.last_modified_at "
        "OR (s.last_modified_at = wh.fact_flats.last_modified_at AND wh.fact_flats.source_key = s.source_key)) THEN"
    )
    normalised = " ".join(conditional.text.split())
    assert condition in normalised
    assert normalised.replace(condition, "WHEN MATCHED THEN") == " ".join(shared.text.split())
