"""Many files in one load transaction (berlin_rentals/warehouse/load.py): the fact merge's SQL as text (on the
stack's PostgreSQL: tests/stack/test_batch_load.py).

The decisive check of the one load's semantics: a batch of files with overlapping listings (newer, older and equally new versions of
one listing in several files, an agency whose contact changes, rejected lines) leaves every table as the
same files loaded one by one, in the batch's order, leave it, starting from a warehouse that already
holds some of them. Run ids and load times differ by design and are left out of the comparison.
"""

from __future__ import annotations

import re

import pytest

from berlin_rentals.model import FACT_FLATS
from berlin_rentals.warehouse.sql import SQL_DIR


def _columns(sql: str, start: str) -> list[str]:
    block = sql.split(start, 1)[1].split(")", 1)[0]
    return [c.strip() for c in block.replace("\n", " ").split(",")]


@pytest.mark.parametrize("path", ["load/merge_into_fact_flats.sql", "postgresql/merge_into_fact_flats.sql"])
def test_the_fact_merge_inserts_every_column_of_fact_flats(path):
    """Every column of fact_flats gets its staged value (lineage included: a load of many files writes
    each row's own file), and the run's id and time."""
    sql = re.sub(r"--[^\n]*", "", (SQL_DIR / path).read_text())
    inserted = _columns(sql, "WHEN NOT MATCHED THEN INSERT (")
    values = [v.strip() for v in sql.split(") VALUES (", 1)[1].rsplit(")", 1)[0].replace("\n", " ").split(", ")]
    lineage = ["source_key", "source_etag", "batch_hour", "source_bucket", "source_version_id"]
    assert sorted(inserted) == sorted([c.name for c in FACT_FLATS] + lineage + ["flow_run_id", "loaded_at"])
    given = dict(zip(inserted, values, strict=True))
    assert given.pop("flow_run_id").startswith("CAST(:flow_run_id") and given.pop("loaded_at").startswith(
        "CAST(:loaded_at"
    )
    assert given == {c: f"s.{c}" for c in given}
