"""The DDL both engines get from the one model; Redshift's distribution and sort keys."""

from __future__ import annotations

import re

from berlin_rentals.model import STAGED_TABLES, column_names
from berlin_rentals.warehouse.ddl import ddl_statements
from berlin_rentals.warehouse.sql import SQL_DIR


def _ddl(dialect: str) -> dict[str, str]:
    out = {}
    for stmt in ddl_statements(dialect):
        if table := re.search(r"CREATE TABLE berlin_rentals\.(\w+)", stmt):
            out[table.group(1)] = stmt
    return out


def test_redshift_ddl_distributes_facts_on_listing_and_copies_dimensions():
    ddl = _ddl("redshift")
    assert "DISTKEY (listing_id)" in ddl["fact_flats"] and "SORTKEY (last_modified_at)" in ddl["fact_flats"]
    assert (
        "DISTKEY (listing_id)" in ddl["flat_snapshots"] and "SORTKEY (batch_hour, listing_id)" in ddl["flat_snapshots"]
    )
    for dim in ("dim_city", "dim_district", "dim_address", "dim_agency", "dim_agent"):
        assert "DISTSTYLE ALL" in ddl[dim]


def test_postgresql_ddl_has_no_redshift_options():
    for stmt in _ddl("postgresql").values():
        assert "DISTKEY" not in stmt and "SORTKEY" not in stmt and "DISTSTYLE" not in stmt


def test_every_staged_column_reaches_its_target_table_through_the_merge_sql():
    merge_files = {
        "fact_flats": "merge_into_fact_flats.sql",
        "flat_snapshots": "replace_flat_snapshots.sql",
        "rejected_records": "replace_rejected_records.sql",
        "dim_agency": "merge_into_dim_agency.sql",
        "dim_agent": "merge_into_dim_agent.sql",
        "dim_address": "merge_into_dim_address.sql",
        "dim_district": "merge_into_dim_district.sql",
        "dim_city": "merge_into_dim_city.sql",
    }
    for table, file in merge_files.items():
        body = (SQL_DIR / "load" / file).read_text()
        for column in column_names(table):
            assert re.search(rf"\b{column}\b", body), f"{column} of {table} is not written by {file}"
    assert set(merge_files) == set(STAGED_TABLES)


def test_postgresql_indexes_the_source_key_of_every_table_a_load_replaces_by_key_and_redshift_has_none():
    postgresql = [s for s in ddl_statements("postgresql") if s.startswith("CREATE INDEX")]
    assert postgresql == [
        f"CREATE INDEX IF NOT EXISTS {t}_source_key ON berlin_rentals.{t} (source_key)"
        for t in ("fact_flats", "flat_snapshots", "rejected_records")
    ]
    assert not [s for s in ddl_statements("redshift") if "INDEX" in s.upper()]
