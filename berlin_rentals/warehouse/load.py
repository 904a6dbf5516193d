"""The one load: 1..N staged files in one warehouse transaction. An event's file is a load of one file; the
catch-up's micro-batches are loads of many.

Either everything of a load is committed together with its files' ledger rows, or nothing is: a crash at
any point leaves the warehouse as it was, and the ledger row committed with the data is what makes a second
delivery of the same object version a no-op. Under the load's locks (its keys on PostgreSQL, the ledger on
Redshift) the ledger is read once and decides each file:
- skipped: its version is loaded or parked already (by another run meanwhile), unless `force`;
- superseded: a newer version of its key is loaded, or is in the same load; refused whatever `force` says,
  so a late retry never undoes its correction;
- loaded: claimed, staged, merged. A file of a key with another version loaded (a correction), or a forced
  reload, restates its key: what only the replaced version said is rebuilt from other files' snapshots or
  removed (sql/load/restate_key_*.sql).
Each file keeps its own ledger row, snapshots, rejects, lineage and figures (counted as loading the files one
by one, in load order, would count them); each listing's newest version across the load wins.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from berlin_rentals.batch import TransformStats
from berlin_rentals.model import STAGED_TABLES
from berlin_rentals.source import SourceObject
from berlin_rentals.staging import StagedBatch, with_source_etag
from berlin_rentals.warehouse.engines import Target, key_lock_name
from berlin_rentals.warehouse.merge import (
    copy_into_staging,
    execute_file,
    merge_dimensions,
    merge_facts,
    write_load_files,
)
from berlin_rentals.warehouse.sql import statement, statements

LOADED_MEANWHILE = "already loaded (or parked) per the ledger"

FileId = tuple[str, str]  # (key, ETag)


@dataclass(frozen=True)
class LoadReport:
    """What the load did to one file. status: loaded | skipped (ledger: loaded or parked) | superseded."""

    status: str
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
    ledger: str = ""  # a skipped file's ledger status (loaded, parked)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BatchFile:
    """One staged file of a load, and the attempt its run counted (ended as loaded with the load)."""

    source: SourceObject
    staged: StagedBatch
    stats: TransformStats
    attempt: str | None = None

    @property
    def id(self) -> FileId:
        return (self.source.key, self.source.etag)


@dataclass(frozen=True)
class LoadResult:
    """Every file's report, in load order; `run_id` is what the rows and ledger record as the run that loaded them."""

    run_id: str | None
    reports: dict[FileId, LoadReport] = field(default_factory=dict)

    def with_status(self, status: str) -> dict[FileId, LoadReport]:
        return {f: r for f, r in self.reports.items() if r.status == status}

    @property
    def loaded(self) -> dict[FileId, LoadReport]:
        return self.with_status("loaded")


def file_status(engine: sa.Engine, schema: str, source: SourceObject) -> str | None:
    """The ledger's word on this object version: None, loading, loaded, failed, parked or superseded."""
    with engine.connect() as conn:
        row = conn.execute(
            statement("ledger/select_file_status.sql", schema),
            {"bucket": source.bucket, "key": source.key, "etag": source.etag},
        ).first()
    return None if row is None else row.status


def load_order(files: Iterable[BatchFile]) -> list[BatchFile]:
    """The order a load's files count in (ties between listings, first-file attribution): as the catch-up
    plans them, by batch hour, then key. Two files of one load never share an ETag (the staged rows name
    their file by it), and come from one bucket (the ledger is read for one)."""
    ordered = sorted(files, key=lambda f: (f.source.batch_hour, f.source.key, f.source.last_modified))
    etags = [f.source.etag for f in ordered]
    if len(set(etags)) != len(etags):
        raise ValueError("two files of one batch have the same ETag: put them in different batches")
    if len({f.source.bucket for f in ordered}) > 1:
        raise ValueError("the files of one load come from one bucket")
    return ordered


def _newer(a: SourceObject | sa.Row, b: SourceObject) -> bool:
    """Whether version `a` of a key is newer than `b`: by LastModified, a tie broken by version id. Versions
    without a version id that tie on LastModified cannot be told apart: the later load stands."""
    if a.last_modified is None or b.last_modified is None:
        return False
    if a.last_modified != b.last_modified:
        return a.last_modified > b.last_modified
    return bool(a.version_id and b.version_id and a.version_id > b.version_id)


def _superseded_reason(source: SourceObject, newer: SourceObject | sa.Row, where: str) -> str:
    return (
        f"a newer version of the key is {where} (ETag {newer.etag}, LastModified {newer.last_modified.isoformat()}); "
        f"this one (ETag {source.etag}, LastModified {source.last_modified.isoformat()}) is superseded and was not loaded"
    )


def decide(files: list[BatchFile], ledger: list[sa.Row], *, force: bool) -> dict[FileId, LoadReport]:
    """The ledger's verdict on the files it does not let load (skipped, superseded), read under the load's
    locks: a pure function of the files and the ledger rows of their keys."""
    own = {(r.key, r.etag): r for r in ledger}
    verdicts: dict[FileId, LoadReport] = {}
    for file in files:
        source, row = file.source, own.get(file.id)
        if row is not None and row.status in ("loaded", "parked") and not force:
            verdicts[file.id] = LoadReport(status="skipped", reason=LOADED_MEANWHILE, ledger=row.status)
            continue
        newer = [r for r in ledger if r.key == source.key and r.etag != source.etag and r.status == "loaded"]
        newer = [r for r in newer if _newer(r, source)]
        if newer:
            newest = max(newer, key=lambda r: (r.last_modified, r.version_id or ""))
            verdicts[file.id] = LoadReport(status="superseded", reason=_superseded_reason(source, newest, "loaded"))
            continue
        # Two versions of a key that cannot be told apart: the later in load order stands, as loaded one by one.
        later = files[files.index(file) + 1 :]
        in_load = [
            f.source
            for f in files
            if f.source.key == source.key
            and f is not file
            and (_newer(f.source, source) or (f in later and not _newer(source, f.source)))
        ]
        if in_load:
            reason = _superseded_reason(source, max(in_load, key=lambda s: s.last_modified), "in the same load")
            verdicts[file.id] = LoadReport(status="superseded", reason=reason)
    return verdicts


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
        "rejected_by_reason": stats.rejected_summary(),
        "flagged_count": stats.flagged,
        "unknown_field_count": sum(stats.unknown_fields.values()),
        "snapshots_written": file.staged.rows.get("flat_snapshots", 0),
        "attempt_id": file.attempt,
    }


def batch_data(files: Sequence[BatchFile], tables: dict[str, dict[str, pa.Table]]) -> dict[str, pa.Table]:
    """Each staged table of the load as one Arrow table (PostgreSQL's COPY FROM STDIN), from each file's
    tables by ETag; every row names its file's ETag."""
    return {
        name: pa.concat_tables([with_source_etag(tables[f.source.etag][name], f.source.etag) for f in files])
        for name in STAGED_TABLES
    }


def _open_session(conn: sa.Connection, target: Target, files: list[BatchFile], run_id: str | None) -> None:
    # Retries of this load must not wait on an orphaned earlier attempt (see the SQL file). The name is these
    # files' in this run: concurrent loads of other files never share it.
    if target.name != "postgresql" or not run_id:
        return
    ids = ",".join(f"{f.source.bucket}/{f.source.key}#{f.source.etag}" for f in files)
    attempt = hashlib.sha256(f"{ids}@{run_id}".encode()).hexdigest()
    for stmt in statements("postgresql/open_load_session.sql", target.schema):
        conn.execute(stmt, {"session_name": f"berlin-rentals load {attempt[:32]}"})


def _read_ledger(conn: sa.Connection, schema: str, files: list[BatchFile]) -> list[sa.Row]:
    query = statement("ledger/select_ledger_for_keys.sql", schema).bindparams(sa.bindparam("keys", expanding=True))
    keys = sorted({f.source.key for f in files})
    return conn.execute(query, {"bucket": files[0].source.bucket, "keys": keys}).all()


def _mark_superseded(
    conn: sa.Connection, schema: str, files: list[BatchFile], verdicts: dict[FileId, LoadReport], run_id: str | None
) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "bucket": f.source.bucket,
            "key": f.source.key,
            "etag": f.source.etag,
            "flow_run_id": run_id,
            "started_at": now,
            "finished_at": now,
            "reason": verdicts[f.id].reason,
            "last_modified": f.source.last_modified,
            "version_id": f.source.version_id,
        }
        for f in files
        if verdicts.get(f.id, LoadReport("")).status == "superseded"
    ]
    if rows:
        for stmt in statements("ledger/mark_file_superseded.sql", schema):
            conn.execute(stmt, rows)


def _report(row: sa.Row, file: BatchFile) -> LoadReport:
    return LoadReport(
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


def _merge(conn: sa.Connection, target: Target, params: dict[str, Any], *, files: int) -> list[sa.Row]:
    """The staged files into the warehouse, every step once for all of them; each file's figures."""
    schema = target.schema
    execute_file(conn, "load/analyze_staging.sql", schema, params)
    restated = execute_file(conn, "load/capture_restated_flats.sql", schema, params)
    if restated:
        target.lock_dimensions(conn)
        execute_file(conn, "load/release_restated_agencies.sql", schema, params)
    target.lock_dimension_rows(conn)  # newest details win against concurrent loads of other keys
    execute_file(conn, "load/count_dimension_changes.sql", schema, params)
    if files > 1:
        # One file's rows are one per dimension key already (the transform keys them by id): the step would
        # copy and refill ten tables to change nothing, the heaviest fixed cost of a load of one (24 ms).
        execute_file(conn, "load/keep_one_row_per_dimension_key.sql", schema, params)
    merge_dimensions(conn, schema, params)
    if restated:
        execute_file(conn, "load/restate_key_facts.sql", schema, params)
    execute_file(conn, "load/count_fact_changes.sql", schema, params)
    merge_facts(conn, schema, params, target.fact_merge)
    if restated:
        execute_file(conn, "load/restate_key_dimensions.sql", schema, params)
    execute_file(conn, "load/replace_flat_snapshots.sql", schema, params)
    execute_file(conn, "load/replace_rejected_records.sql", schema, params)
    execute_file(conn, "load/mark_files_loaded.sql", schema, params | {"finished_at": datetime.now(UTC)})
    return conn.execute(statement("load/select_file_counts.sql", schema)).all()


def load_staged_files(
    engine: sa.Engine,
    target: Target,
    files: Sequence[BatchFile],
    *,
    run_id: str | None,
    data: dict[str, dict[str, pa.Table]] | None = None,
    manifests: dict[str, str] | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> LoadResult:
    """The load's one transaction. `data`: each file's staged tables by ETag (PostgreSQL streams them);
    `manifests`: each table's manifest URI (Redshift COPYs from them; one file may do without). `run_id` is
    what the rows and ledger record as the run that loaded them (an event's flow run, a batch's task run).
    `force` reloads versions the ledger shows loaded or parked; it never loads a superseded one."""
    now = now or datetime.now(UTC)
    ordered = load_order(files)
    result = LoadResult(run_id=run_id)
    if not ordered:
        return result
    schema = target.schema
    params = {"flow_run_id": run_id, "started_at": now, "loaded_at": now}
    with engine.begin() as conn:
        _open_session(conn, target, ordered, run_id)
        target.lock_keys(conn, sorted({key_lock_name(f.source.bucket, f.source.key) for f in ordered}))
        verdicts = decide(ordered, _read_ledger(conn, schema, ordered), force=force)
        _mark_superseded(conn, schema, ordered, verdicts, run_id)
        kept = [f for f in ordered if f.id not in verdicts]
        if kept:
            by_order = dict(enumerate(kept))
            write_load_files(conn, [_file_row(order, f) for order, f in by_order.items()])
            execute_file(conn, "load/claim_files.sql", schema, params)
            staged = batch_data(kept, data) if data is not None else None
            copy_into_staging(conn, target, [f.staged for f in kept], staged, manifests)
            counts = {row.load_order: row for row in _merge(conn, target, params, files=len(kept))}
    loaded = {f.id: _report(counts[order], f) for order, f in by_order.items()} if kept else {}
    for file in ordered:
        result.reports[file.id] = verdicts.get(file.id) or loaded[file.id]
    return result


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
) -> LoadReport:
    """An event's file: the one load (load_staged_files) with one file, its report."""
    file = BatchFile(source, staged, stats)
    tables = None if data is None else {source.etag: data}
    return load_staged_files(engine, target, [file], run_id=flow_run_id, data=tables, force=force).reports[file.id]
