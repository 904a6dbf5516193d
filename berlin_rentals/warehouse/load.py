"""Load one staged batch: claim the ledger row, COPY into staging, merge, mark loaded. One transaction.

Either everything of a file is committed together with its ledger row, or nothing is: a crash at any
point leaves the warehouse as it was, and the ledger row committed with the data is what makes a
second delivery of the same object version a no-op.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from berlin_rentals.model import STAGED_TABLES
from berlin_rentals.source import SourceObject
from berlin_rentals.staging import StagedBatch
from berlin_rentals.transform import TransformStats
from berlin_rentals.warehouse.engines import Target
from berlin_rentals.warehouse.sql import statement, statements

# Dimensions before facts: a fact row never points at a key its transaction has not written. The fact
# MERGE is the engine's (Target.fact_merge) and runs between these two groups.
DIMENSION_MERGES = (
    "merge/merge_into_dim_city.sql",
    "merge/merge_into_dim_district.sql",
    "merge/merge_into_dim_address.sql",
    "merge/merge_into_dim_agency.sql",
    "merge/merge_into_dim_agent.sql",
)
REPLACE_FILES = (
    "merge/replace_flat_snapshots.sql",
    "merge/replace_rejected_records.sql",
)


@dataclass(frozen=True)
class LoadReport:
    status: str  # "loaded" | "skipped" | "superseded"
    reason: str = ""
    fact_inserted: int = 0
    fact_updated: int = 0
    fact_stale: int = 0
    snapshots_written: int = 0
    rejected: int = 0
    dim_city_inserted: int = 0
    dim_address_inserted: int = 0
    dim_agency_inserted: int = 0
    dim_agency_updated: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ledger_params(source: SourceObject, flow_run_id: str | None, now: datetime) -> dict[str, Any]:
    return {
        "bucket": source.bucket,
        "key": source.key,
        "etag": source.etag,
        "flow_run_id": flow_run_id,
        "started_at": now,
    }


def file_status(engine: sa.Engine, schema: str, source: SourceObject) -> str | None:
    """The ledger's word on this object version: None, loading, loaded, failed, parked or superseded."""
    with engine.connect() as conn:
        row = conn.execute(
            statement("ledger/select_file_status.sql", schema),
            {"bucket": source.bucket, "key": source.key, "etag": source.etag},
        ).first()
    return None if row is None else row.status


def _execute_file(conn: sa.Connection, path: str, schema: str, params: dict[str, Any]) -> int:
    """Run every statement of one file; the row count of the last."""
    count = 0
    for stmt in statements(path, schema):
        count = conn.execute(stmt, params).rowcount
    return count


def _superseded_reason(source: SourceObject, newer: sa.Row) -> str:
    return (
        f"a newer version of the key is loaded (ETag {newer.etag}, LastModified {newer.last_modified.isoformat()}); "
        f"this one (ETag {source.etag}, LastModified {source.last_modified.isoformat()}) is superseded and was not loaded"
    )


def load_staged_batch(
    engine: sa.Engine,
    target: Target,
    source: SourceObject,
    staged: StagedBatch,
    stats: TransformStats,
    *,
    data: dict[str, pa.Table] | None = None,
    force: bool = False,
    flow_run_id: str | None = None,
    now: datetime | None = None,
) -> LoadReport:
    """The load's one transaction. A version older than the key's loaded one is refused inside it
    ("superseded"), whatever `force` says: a late retry must not undo its correction. A version that
    replaces another of its key restates the key: what only the old version said is rebuilt from the
    other files' snapshots or removed."""
    now = now or datetime.now(UTC)
    schema = target.schema
    params = _ledger_params(source, flow_run_id, now) | {
        "force": force,
        "source_key": source.key,
        "source_etag": source.etag,
        "batch_hour": source.batch_hour,
        "loaded_at": now,
        "last_modified": source.last_modified,
        "version_id": source.version_id,
    }
    with engine.begin() as conn:
        if target.name == "postgresql" and flow_run_id:
            # Retries of this load must not wait on an orphaned earlier attempt (see the SQL file). The
            # name is this version's in this run: concurrent loads of other files never share it.
            attempt = hashlib.sha256(f"{source.bucket}/{source.key}#{source.etag}@{flow_run_id}".encode()).hexdigest()
            for stmt in statements("postgresql/open_load_session.sql", schema):
                conn.execute(stmt, {"session_name": f"berlin-rentals load {attempt[:32]}"})
        if not target.claim(conn, params):
            return LoadReport(status="skipped", reason="already loaded (or parked) per the ledger")
        newer = conn.execute(statement("ledger/select_newer_loaded_version.sql", schema), params).first()
        if newer is not None:
            reason = _superseded_reason(source, newer)
            conn.execute(
                statement("ledger/mark_file_superseded.sql", schema),
                params | {"finished_at": datetime.now(UTC), "reason": reason},
            )
            return LoadReport(status="superseded", reason=reason)

        tables = list(STAGED_TABLES)
        target.create_staging_tables(conn, tables)
        for name in tables:
            target.copy_into_staging(conn, name, staged, (data or {}).get(name))

        restated = _execute_file(conn, "merge/capture_restated_flats.sql", schema, params)
        if restated:
            target.lock_dimensions(conn)
            _execute_file(conn, "merge/release_restated_agencies.sql", schema, params)
        dims = conn.execute(statement("merge/count_new_dimension_rows.sql", schema), params).one()
        agency_merged = 0
        for path in DIMENSION_MERGES:
            merged = _execute_file(conn, path, schema, params)
            if path.endswith("merge_into_dim_agency.sql"):
                agency_merged = merged
        if restated:
            _execute_file(conn, "merge/restate_key_facts.sql", schema, params)
        fact = conn.execute(statement("merge/count_load_fact_changes.sql", schema), params).one()
        _execute_file(conn, target.fact_merge, schema, params)
        if restated:
            _execute_file(conn, "merge/restate_key_dimensions.sql", schema, params)
        for path in REPLACE_FILES:
            _execute_file(conn, path, schema, params)
        report = LoadReport(
            status="loaded",
            fact_inserted=int(fact.inserted or 0),
            fact_updated=int(fact.updated or 0),
            fact_stale=int(fact.staged or 0) - int(fact.inserted or 0) - int(fact.updated or 0),
            snapshots_written=staged.rows.get("flat_snapshots", 0),
            rejected=staged.rows.get("rejected_records", 0),
            dim_city_inserted=int(dims.city_inserted or 0),
            dim_address_inserted=int(dims.address_inserted or 0),
            dim_agency_inserted=int(dims.agency_inserted or 0),
            dim_agency_updated=max(agency_merged - int(dims.agency_inserted or 0), 0),
        )
        for stmt in statements("ledger/mark_file_loaded.sql", schema):
            conn.execute(
                stmt,
                params
                | {
                    "finished_at": datetime.now(UTC),
                    "size_bytes": source.size,
                    "batch_hour_source": source.batch_hour_source,
                    "staged_prefix": f"s3://{staged.bucket}/{staged.prefix}",
                    "records_read": stats.lines_read,
                    "listings": stats.listings,
                    "rejected_count": stats.rejected,
                    "flagged_count": stats.flagged,
                    "unknown_field_count": sum(stats.unknown_fields.values()),
                    "fact_inserted": report.fact_inserted,
                    "fact_updated": report.fact_updated,
                    "fact_stale": report.fact_stale,
                    "snapshots_written": report.snapshots_written,
                    "dim_city_inserted": report.dim_city_inserted,
                    "dim_address_inserted": report.dim_address_inserted,
                    "dim_agency_inserted": report.dim_agency_inserted,
                    "dim_agency_updated": report.dim_agency_updated,
                },
            )
    return report


def record_load_failure(
    engine: sa.Engine,
    target: Target,
    source_bucket: str,
    source_key: str,
    source_etag: str,
    error: str,
    *,
    terminal: bool,
    max_attempts: int,
    flow_run_id: str | None = None,
    counted: bool = True,
    stale_seconds: int = 1800,
) -> tuple[str | None, int]:
    """End this run's attempt as failed in its own transaction; park the file when it is terminal or out of
    attempts. Counted once per run however often it is retried (berlin_rentals.warehouse.attempts); a call
    without a run id is an attempt of its own. `counted=False`: a configuration error, not held against
    the file (the ledger row is left as it was)."""
    from berlin_rentals.warehouse.attempts import attempt_id, record_failure

    return record_failure(
        engine,
        target,
        source_bucket,
        source_key,
        source_etag,
        error,
        terminal=terminal,
        max_attempts=max_attempts,
        run_id=attempt_id(flow_run_id),
        counted=counted,
        stale_seconds=stale_seconds,
    )
