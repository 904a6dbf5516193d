"""Load many staged files in one transaction: a backfill's way (the catch-up's micro-batches).

Each file was read, transformed and staged on its own (its Parquet under its ETag's prefix, as a single
load's); here a batch of them is claimed, COPYed into one set of staging tables (on Redshift one COPY per
table, from a manifest of the batch's files), reduced to each listing's newest version across the batch,
merged, and marked loaded, all in one commit. Exactly once still holds per file: under the batch's locks a
file that another run loaded (or parked) meanwhile drops out, and each file keeps its own ledger row,
snapshots, rejects and lineage (every staged row carries its file's ETag: model.STAGED_ETAG).

A file whose key has another version loaded is a correction: it restates its key, which only a load of its
own does (berlin_rentals/warehouse/load.py). It drops out too, to be loaded alone. The event-driven path
stays one file per transaction: a batch trades latency for fewer commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.schema import CreateTable, DropTable

from berlin_rentals.model import STAGED_TABLES
from berlin_rentals.source import SourceObject
from berlin_rentals.staging import StagedBatch, with_source_etag
from berlin_rentals.transform import TransformStats
from berlin_rentals.warehouse.engines import Target
from berlin_rentals.warehouse.load import DIMENSION_MERGES, LoadReport, execute_file
from berlin_rentals.warehouse.sql import statement, statements
from berlin_rentals.warehouse.tables import batch_files_table

# After the dimensions (a fact row never points at a key its transaction has not written).
BATCH_WRITES = (
    "batch/merge_batch_into_fact_flats.sql",
    "batch/replace_batch_flat_snapshots.sql",
    "batch/replace_batch_rejected_records.sql",
)

LOADED_MEANWHILE = "loaded or parked by another run meanwhile"
RESTATES_ITS_KEY = "another version of its key is loaded: a correction, loaded on its own"


@dataclass(frozen=True)
class BatchFile:
    """One staged file of a batch, and the attempt its run counted (ended as loaded with the batch)."""

    source: SourceObject
    staged: StagedBatch
    stats: TransformStats
    attempt: str | None = None

    @property
    def id(self) -> tuple[str, str]:
        return (self.source.key, self.source.etag)


@dataclass(frozen=True)
class BatchLoadReport:
    """What one batch's transaction did to each of its files."""

    batch_id: str
    loaded: dict[tuple[str, str], LoadReport] = field(default_factory=dict)
    # (key, ETag) -> why it left the batch: LOADED_MEANWHILE (then `ledger` says loaded or parked) or
    # RESTATES_ITS_KEY (load it on its own).
    dropped: dict[tuple[str, str], str] = field(default_factory=dict)
    ledger: dict[tuple[str, str], str] = field(default_factory=dict)


def batch_order(files: Iterable[BatchFile]) -> list[BatchFile]:
    """The order a batch's files count in (ties between listings, first-file attribution): as the catch-up
    plans them, by batch hour, then key. Two files of one batch never share an ETag (the staged rows
    name their file by it): plan_batches keeps them apart."""
    ordered = sorted(files, key=lambda f: (f.source.batch_hour, f.source.key))
    etags = [f.source.etag for f in ordered]
    if len(set(etags)) != len(etags):
        raise ValueError("two files of one batch have the same ETag: put them in different batches")
    return ordered


def _file_row(order: int, file: BatchFile) -> dict[str, Any]:
    source, stats = file.source, file.stats
    return {
        "load_order": order,
        "bucket": source.bucket,
        "key": source.key,
        "etag": source.etag,
        "batch_hour": source.batch_hour,
        "batch_hour_source": source.batch_hour_source,
        "last_modified": source.last_modified,
        "version_id": source.version_id,
        "size_bytes": source.size,
        "staged_prefix": f"s3://{file.staged.bucket}/{file.staged.prefix}",
        "records_read": stats.lines_read,
        "listings": stats.listings,
        "rejected_count": stats.rejected,
        "flagged_count": stats.flagged,
        "unknown_field_count": sum(stats.unknown_fields.values()),
        "snapshots_written": file.staged.rows.get("flat_snapshots", 0),
        "attempt_id": file.attempt,
    }


def batch_data(files: list[BatchFile], tables: dict[str, dict[str, pa.Table]]) -> dict[str, pa.Table]:
    """Each staged table of the batch as one Arrow table (PostgreSQL's COPY FROM STDIN), from each file's
    tables by ETag; every row names its file's ETag."""
    return {
        name: pa.concat_tables([with_source_etag(tables[f.source.etag][name], f.source.etag) for f in files])
        for name in STAGED_TABLES
    }


def _dropped(rows: list[sa.Row]) -> tuple[dict[int, str], dict[int, str]]:
    """(load_order -> why it drops out, load_order -> the ledger status that decided a LOADED_MEANWHILE)."""
    why: dict[int, str] = {}
    status: dict[int, str] = {}
    for row in rows:
        if row.own_version and row.status in ("loaded", "parked"):
            why[row.load_order], status[row.load_order] = LOADED_MEANWHILE, row.status
    for row in rows:
        if not row.own_version and row.status == "loaded" and row.load_order not in why:
            why[row.load_order] = RESTATES_ITS_KEY
    return why, status


def load_staged_files(
    engine: sa.Engine,
    target: Target,
    files: list[BatchFile],
    *,
    batch_id: str,
    data: dict[str, dict[str, pa.Table]] | None = None,
    manifests: dict[str, str] | None = None,
    now: datetime | None = None,
) -> BatchLoadReport:
    """The batch's one transaction. `data`: each file's staged tables by ETag (PostgreSQL streams them);
    `manifests`: each table's manifest URI (Redshift COPYs from them). `batch_id` is what the rows and
    ledger record as the run that loaded them (the batch's task run)."""
    now = now or datetime.now(UTC)
    ordered = batch_order(files)
    by_order = dict(enumerate(ordered))
    report = BatchLoadReport(batch_id=batch_id)
    if not ordered:
        return report
    schema = target.schema
    params = {"flow_run_id": batch_id, "started_at": now, "loaded_at": now}
    table = batch_files_table()
    with engine.begin() as conn:
        if target.name == "postgresql":
            for stmt in statements("postgresql/open_load_session.sql", schema):
                conn.execute(stmt, {"session_name": f"berlin-rentals batch {batch_id[:40]}"})
        conn.execute(DropTable(table, if_exists=True))
        conn.execute(CreateTable(table))
        # One INSERT of many rows (bound values): one statement per batch, on either driver.
        conn.execute(table.insert().values([_file_row(order, f) for order, f in by_order.items()]))
        target.lock_batch(conn)
        ledger = conn.execute(statement("batch/select_ledger_of_batch_keys.sql", schema)).all()
        why, status = _dropped(ledger)
        for order, reason in why.items():
            report.dropped[by_order[order].id] = reason
            if order in status:
                report.ledger[by_order[order].id] = status[order]
        if why:
            drop = statement("batch/delete_dropped_batch_files.sql", schema).bindparams(
                sa.bindparam("dropped", expanding=True)
            )
            conn.execute(drop, {"dropped": sorted(why)})
        kept = [f for order, f in by_order.items() if order not in why]
        if not kept:
            return report

        execute_file(conn, "batch/claim_batch_files.sql", schema, params)
        tables = list(STAGED_TABLES)
        target.create_staging_tables(conn, tables)
        staged = batch_data(kept, data) if data is not None else {}
        for name in tables:
            target.copy_batch_into_staging(conn, name, staged.get(name), (manifests or {}).get(name))
        execute_file(conn, "batch/analyze_batch_staging.sql", schema, params)
        execute_file(conn, "batch/count_batch_changes.sql", schema, params)
        execute_file(conn, "batch/keep_one_row_per_dimension_key.sql", schema, params)
        for path in DIMENSION_MERGES:
            execute_file(conn, path, schema, params)
        for path in BATCH_WRITES:
            execute_file(conn, path, schema, params)
        execute_file(conn, "batch/mark_batch_files_loaded.sql", schema, params | {"finished_at": datetime.now(UTC)})
        counts = conn.execute(statement("batch/select_batch_counts.sql", schema)).all()
    for row in counts:
        file = by_order[row.load_order]
        report.loaded[file.id] = LoadReport(
            status="loaded",
            fact_inserted=int(row.fact_inserted),
            fact_updated=int(row.fact_updated),
            fact_stale=int(row.fact_staged) - int(row.fact_inserted) - int(row.fact_updated),
            snapshots_written=file.staged.rows.get("flat_snapshots", 0),
            rejected=file.staged.rows.get("rejected_records", 0),
            dim_city_inserted=int(row.dim_city_inserted),
            dim_address_inserted=int(row.dim_address_inserted),
            dim_agency_inserted=int(row.dim_agency_inserted),
            dim_agency_updated=int(row.dim_agency_updated),
        )
    return report
