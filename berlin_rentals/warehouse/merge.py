"""The merge of staged files into the warehouse's tables: the load's (berlin_rentals/warehouse/load.py) and
the replay's (berlin_rentals/replay.py) one set of merge SQL, sql/load/.

The files of a load sit in the session's `stage_batch_files` (one row each, its order in the load and the
lineage every row it brings is written with); their staged rows in one staging table per table, each row
naming its file by ETag (model.STAGED_ETAG). One file is the case of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.schema import CreateTable, DropTable

from berlin_rentals.model import STAGED_TABLES
from berlin_rentals.staging import StagedBatch
from berlin_rentals.warehouse.engines import Target
from berlin_rentals.warehouse.sql import statements
from berlin_rentals.warehouse.tables import batch_files_table

# Dimensions before facts: a fact row never points at a key its transaction has not written.
DIMENSION_MERGES = (
    "load/merge_into_dim_city.sql",
    "load/merge_into_dim_district.sql",
    "load/merge_into_dim_address.sql",
    "load/merge_into_dim_agency.sql",
    "load/merge_into_dim_agent.sql",
)


def execute_file(conn: sa.Connection, path: str, schema: str, params: dict[str, Any]) -> int:
    """Run every statement of one file; the row count of the last."""
    count = 0
    for stmt in statements(path, schema):
        count = conn.execute(stmt, params).rowcount
    return count


def write_load_files(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """The session's table of the load's files, one row each (tables.batch_files_table's columns)."""
    table = batch_files_table()
    # A temporary table lives as long as the session; a pooled session may still hold the last load's.
    conn.execute(DropTable(table, if_exists=True))
    conn.execute(CreateTable(table))
    # One INSERT of many rows (bound values): one statement per load, on either driver.
    conn.execute(table.insert().values(rows))


def copy_into_staging(
    conn: sa.Connection,
    target: Target,
    staged: Sequence[StagedBatch],
    data: dict[str, pa.Table] | None = None,
    manifests: dict[str, str] | None = None,
) -> None:
    """This transaction's staging tables, one COPY each: from the staged Parquet of the files (Redshift: the
    one file's prefix, or the manifest of many) or from the tables themselves (PostgreSQL's COPY FROM STDIN)."""
    tables = list(STAGED_TABLES)
    target.create_staging_tables(conn, tables)
    for name in tables:
        target.copy_into_staging(conn, name, staged, (data or {}).get(name), (manifests or {}).get(name))


def merge_dimensions(conn: sa.Connection, schema: str, params: dict[str, Any]) -> int:
    """Every dimension's staged rows into it (one row per key: a load of many files keeps one first); the
    dim_agency rows the MERGE wrote, inserted and updated."""
    agency_merged = 0
    for path in DIMENSION_MERGES:
        merged = execute_file(conn, path, schema, params)
        if path.endswith("merge_into_dim_agency.sql"):
            agency_merged = merged
    return agency_merged


def merge_facts(conn: sa.Connection, schema: str, params: dict[str, Any], fact_merge: str) -> None:
    """Each listing's newest staged version, with its file's lineage, into fact_flats by `fact_merge`: the
    engine's (Target.fact_merge), or the shared one under a lock that keeps every load out (the replay)."""
    execute_file(conn, "load/keep_newest_row_per_listing.sql", schema, params)
    execute_file(conn, fact_merge, schema, params)
