"""Warehouse tables as SQLAlchemy Core, compiled for PostgreSQL or (via sqlalchemy-redshift) Redshift.

Distribution and sort keys only mean something on Redshift; the PostgreSQL dialect ignores them.
- fact_flats and flat_snapshots are distributed on listing_id, so the MERGE on listing_id and
  joins of a listing's history stay on one slice; they sort on time, which analysts filter by.
- the dimensions are small and joined from every fact row: DISTSTYLE ALL copies them to each node.
- load_ledger and rejected_records are small operational tables: DISTSTYLE ALL / EVEN.
Column encodings are left to Redshift's ENCODE AUTO.
"""

from __future__ import annotations

import sqlalchemy as sa

from berlin_rentals.model import LINEAGE, STAGED_ETAG, STAGED_TABLES, Col

_DIST_SORT = {
    "dim_city": dict(redshift_diststyle="ALL", redshift_sortkey="city_id"),
    "dim_district": dict(redshift_diststyle="ALL", redshift_sortkey="district_id"),
    "dim_address": dict(redshift_diststyle="ALL", redshift_sortkey="address_id"),
    "dim_agency": dict(redshift_diststyle="ALL", redshift_sortkey="agency_id"),
    "dim_agent": dict(redshift_diststyle="ALL", redshift_sortkey="agent_id"),
    "fact_flats": dict(redshift_diststyle="KEY", redshift_distkey="listing_id", redshift_sortkey="last_modified_at"),
    "flat_snapshots": dict(
        redshift_diststyle="KEY", redshift_distkey="listing_id", redshift_sortkey=("batch_hour", "listing_id")
    ),
    "rejected_records": dict(redshift_diststyle="EVEN", redshift_sortkey="batch_hour"),
    "load_ledger": dict(redshift_diststyle="ALL", redshift_sortkey=("bucket", "key")),
    "load_attempts": dict(redshift_diststyle="ALL", redshift_sortkey=("bucket", "key")),
}

_PRIMARY_KEYS = {
    "dim_city": ("city_id",),
    "dim_district": ("district_id",),
    "dim_address": ("address_id",),
    "dim_agency": ("agency_id",),
    "dim_agent": ("agent_id",),
    "fact_flats": ("listing_id",),
    "flat_snapshots": ("source_key", "listing_id"),
    "rejected_records": ("source_key", "member", "line_number"),
}

# Columns the load adds to a staged table: who loaded the row, and when.
_LOAD_COLUMNS = {
    "fact_flats": ("flow_run_id", "loaded_at"),
    "flat_snapshots": ("flow_run_id", "loaded_at"),
    "rejected_records": ("flow_run_id", "rejected_at"),
}


def _column(col: Col, primary_key: bool) -> sa.Column:
    return sa.Column(col.name, col.sql(), primary_key=primary_key, nullable=col.nullable and not primary_key)


def _load_column(name: str) -> sa.Column:
    if name == "flow_run_id":
        return sa.Column(name, sa.String(64))
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def warehouse_metadata(schema: str) -> sa.MetaData:
    metadata = sa.MetaData(schema=schema)
    for name, cols in STAGED_TABLES.items():
        pk = _PRIMARY_KEYS[name]
        columns = [_column(c, c.name in pk) for c in cols]
        if name in _LOAD_COLUMNS:
            columns += [_column(c, c.name in pk) for c in LINEAGE]
            columns += [_load_column(n) for n in _LOAD_COLUMNS[name]]
        sa.Table(name, metadata, *columns, **_DIST_SORT[name])
    sa.Table(
        "load_ledger",
        metadata,
        sa.Column("bucket", sa.String(63), primary_key=True),
        sa.Column("key", sa.String(1024), primary_key=True),
        sa.Column("etag", sa.String(64), primary_key=True),
        # loading | loaded | failed | parked | superseded
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("last_modified", sa.DateTime(timezone=True)),
        sa.Column("version_id", sa.String(1024)),  # S3 version id, with last_modified: which version is newer
        sa.Column("batch_hour", sa.DateTime(timezone=True)),
        sa.Column("batch_hour_source", sa.String(16)),
        sa.Column("staged_prefix", sa.String(1024)),
        sa.Column("records_read", sa.Integer),
        sa.Column("listings", sa.Integer),
        sa.Column("rejected_count", sa.Integer),
        # every rejected line counted by reason, `code=count` comma-separated (rejected_records keeps at most
        # ETL_MAX_REJECTED_ROWS of them as rows)
        sa.Column("rejected_by_reason", sa.String(1024)),
        sa.Column("flagged_count", sa.Integer),  # listings loaded with quality flags
        sa.Column("unknown_field_count", sa.Integer),  # occurrences of keys the model does not know
        sa.Column("fact_inserted", sa.Integer),
        sa.Column("fact_updated", sa.Integer),
        sa.Column("fact_stale", sa.Integer),
        sa.Column("snapshots_written", sa.Integer),
        sa.Column("dim_city_inserted", sa.Integer),
        sa.Column("dim_address_inserted", sa.Integer),
        sa.Column("dim_agency_inserted", sa.Integer),
        sa.Column("dim_agency_updated", sa.Integer),
        sa.Column("flow_run_id", sa.String(64)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.String(4096)),
        **_DIST_SORT["load_ledger"],
    )
    # One row per run that attempted an object version, written before its heavy work (berlin_rentals/
    # warehouse/attempts.py): a run the kernel killed still counts, and a retried write counts once.
    sa.Table(
        "load_attempts",
        metadata,
        sa.Column("bucket", sa.String(63), primary_key=True),
        sa.Column("key", sa.String(1024), primary_key=True),
        sa.Column("etag", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        # NULL while running (or if the process died), failed, or config (not counted against the file)
        sa.Column("outcome", sa.String(16)),
        sa.Column("error", sa.String(4096)),
        sa.Column("released_at", sa.DateTime(timezone=True)),  # released: no longer counted
        **_DIST_SORT["load_attempts"],
    )
    return metadata


# A staging table of the facts is distributed as its target is: the MERGE (or DELETE and INSERT) on
# listing_id then joins on each slice, with no redistribution of the staged rows.
_STAGING_DIST = {
    "fact_flats": dict(redshift_diststyle="KEY", redshift_distkey="listing_id"),
    "flat_snapshots": dict(redshift_diststyle="KEY", redshift_distkey="listing_id"),
}


def staging_table(name: str) -> sa.Table:
    """The session-local table a load COPYs staged Parquet into (same columns, same order: the transform's,
    then the ETag of each row's file)."""
    return sa.Table(
        f"stage_{name}",
        sa.MetaData(),
        *[sa.Column(c.name, c.sql(), nullable=True) for c in [*STAGED_TABLES[name], STAGED_ETAG]],
        prefixes=["TEMPORARY"],
        **_STAGING_DIST.get(name, {}),
    )


def batch_files_table() -> sa.Table:
    """The session-local table of a load's files, one row each (berlin_rentals/warehouse/load.py):
    what the ledger and each row's lineage need to know of the file, and its order in the load."""
    return sa.Table(
        "stage_batch_files",
        sa.MetaData(),
        sa.Column("load_order", sa.Integer, nullable=False),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("batch_hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("batch_hour_source", sa.String(16)),
        sa.Column("last_modified", sa.DateTime(timezone=True)),
        sa.Column("version_id", sa.String(1024)),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("staged_prefix", sa.String(1024)),
        sa.Column("records_read", sa.Integer),
        sa.Column("listings", sa.Integer),
        sa.Column("rejected_count", sa.Integer),
        # every rejected line counted by reason, `code=count` comma-separated (rejected_records keeps at most
        # ETL_MAX_REJECTED_ROWS of them as rows)
        sa.Column("rejected_by_reason", sa.String(1024)),
        sa.Column("flagged_count", sa.Integer),
        sa.Column("unknown_field_count", sa.Integer),
        sa.Column("snapshots_written", sa.Integer),
        sa.Column("attempt_id", sa.String(64)),
        prefixes=["TEMPORARY"],
    )
