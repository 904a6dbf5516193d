"""Replay the rejected lines of a loaded object version through the current transform.

After the transform is fixed, the lines it refused are recovered without reloading the good ones: each is read
again from the raw version at its place in `rejected_records` (its `raw_line` is capped, NULL under masking),
transformed, and loaded in one transaction by the merges of a normal load (newest wins). Nothing here knows Prefect.

Order of a replay:
1. outside any transaction: read the version's rejected positions, pick those lines from the
   downloaded archive, transform them, stage the result as Parquet (Redshift COPY reads it from S3);
2. one transaction: lock the ledger (a reload, a correction or another replay of any file waits),
   check the version is still 'loaded', re-read its rejected positions; if they are not exactly the
   ones transformed (someone replayed or reloaded meanwhile) roll back and go again from 1;
   otherwise stage, merge dimensions and facts, insert the recovered listings' snapshots, delete the
   recovered lines from rejected_records, rewrite changed reasons, update the ledger's counts.
A replay that recovers nothing and finds every reason unchanged writes nothing at all.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from berlin_rentals.batch import TRANSFORM_VERSION
from berlin_rentals.config import Settings
from berlin_rentals.markdown import code, text
from berlin_rentals.masking import Masker
from berlin_rentals.model import column_names
from berlin_rentals.replay_lines import (
    RecordedReject,
    ReplayBatch,
    pick_lines,
    reason_code,
    replayed_reasons,
    stage_replay,
    transform_rejected,
)
from berlin_rentals.source import SourceObject
from berlin_rentals.staging import StagedBatch
from berlin_rentals.warehouse.engines import Target
from berlin_rentals.warehouse.merge import copy_into_staging, merge_dimensions, merge_facts, write_load_files
from berlin_rentals.warehouse.sql import statement, statements

# How each engine serialises a replay with loads: PostgreSQL a self-conflicting table lock mode that
# every claim waits for; Redshift the same table LOCK its claims take.
LEDGER_LOCK = {
    "postgresql": "postgresql/lock_load_ledger_for_replay.sql",
    "redshift": "redshift/lock_load_ledger.sql",
}
MAX_ROUNDS = 3


class ReplayRefused(ValueError):
    """This object version cannot be replayed (not loaded, superseded, changed). Terminal: never retried."""


@dataclass
class ReplayOutcome:
    status: str  # "replayed" | "unchanged" | "nothing to replay"
    bucket: str = ""
    key: str = ""
    etag: str = ""
    lines_replayed: int = 0
    recovered: int = 0
    still_rejected: int = 0
    reasons_changed: int = 0
    fact_inserted: int = 0
    fact_updated: int = 0
    fact_stale: int = 0
    snapshots_inserted: int = 0
    snapshots_replaced: int = 0
    dim_city_inserted: int = 0
    dim_address_inserted: int = 0
    dim_agency_inserted: int = 0
    rejected_before: int = 0
    rejected_after: int = 0
    rounds: int = 0
    staged_prefix: str | None = None
    seconds: float = 0.0
    # per line: (member, line_number, "recovered" | "rejected", reason now)
    lines: list[tuple[str, int, str, str]] = field(default_factory=list)
    still_rejected_by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("lines")
        return data


# ---- the warehouse part -------------------------------------------------------------------------


def ledger_versions(engine: sa.Engine, schema: str, bucket: str, key: str) -> dict[str, tuple[str, int | None]]:
    """etag -> (status, rejected_count) for every ledger row of the key."""
    with engine.connect() as conn:
        rows = conn.execute(statement("replay/select_ledger_versions.sql", schema), {"bucket": bucket, "key": key})
        return {row.etag: (row.status, row.rejected_count) for row in rows}


def files_with_rejects(engine: sa.Engine, schema: str, since: datetime) -> list[tuple[str, str, str, datetime, int]]:
    """(bucket, key, etag, batch hour, rejected_count) of loaded versions with rejected lines since an hour."""
    with engine.connect() as conn:
        rows = conn.execute(statement("replay/select_files_with_rejects.sql", schema), {"since": since})
        return [tuple(row) for row in rows]


def replayable_etag(versions: dict[str, tuple[str, int | None]], bucket: str, key: str, etag: str | None) -> str:
    """The version to replay: the one named, or the key's loaded one. Anything but 'loaded' is refused."""
    uri = f"s3://{bucket}/{key}"
    if etag is None:
        loaded = [e for e, (status, _) in versions.items() if status == "loaded"]
        if not loaded:
            seen = ", ".join(f"{e} {s}" for e, (s, _) in sorted(versions.items())) or "no ledger row"
            raise ReplayRefused(f"{uri} has no loaded version to replay ({seen}); ingest it first")
        return loaded[0]
    if etag not in versions:
        raise ReplayRefused(f"{uri} (ETag {etag}) is not in the ledger: it was never loaded; ingest it first")
    status = versions[etag][0]
    if status != "loaded":
        hint = {
            "superseded": "a newer version replaced it and its rejects; replay that version instead",
            "parked": "release it with force=true on ingest-file instead",
        }.get(status, "only a loaded version can be replayed")
        raise ReplayRefused(f"{uri} (ETag {etag}) is {status!r} in the ledger: {hint}")
    return etag


def rejected_lines(conn: sa.Connection, schema: str, source: SourceObject) -> list[RecordedReject]:
    rows = conn.execute(
        statement("replay/select_rejected_lines.sql", schema), {"source_key": source.key, "source_etag": source.etag}
    )
    return [RecordedReject(row.member, row.line_number, row.reason, bool(row.raw_withheld)) for row in rows]


def check_masking(source: SourceObject, rejected: Iterable[RecordedReject], masker: Masker | None) -> None:
    """A version loaded with masking must not get clear-text contact data from a replay without it."""
    if masker is None and any(r.raw_withheld for r in rejected):
        raise ReplayRefused(
            f"{source.uri} (ETag {source.etag}) was loaded with personal-data masking (its rejected "
            "lines keep no raw text), but masking is off here: set ETL_MASK_PERSONAL_DATA and "
            "ETL_MASK_SALT as the loads have them, then replay"
        )


def _snapshot_statements(schema: str) -> list[sa.TextClause]:
    columns = ", ".join(column_names("flat_snapshots"))  # identifiers from the model, never from input
    return [
        sa.text(s.text.replace("{snapshot_columns}", columns))
        for s in statements("replay/insert_replayed_flat_snapshots.sql", schema)
    ]


def _replayed_file(source: SourceObject) -> dict[str, Any]:
    """The replayed file's row of the load's file table: the lineage its recovered facts are merged with."""
    return {
        "load_order": 0,
        "bucket": source.bucket,
        "key": source.key,
        "etag": source.etag,
        "batch_hour": source.batch_hour,
        "last_modified": source.last_modified,
        "version_id": source.version_id,
    }


class _Changed(Exception):
    """The version's rejects changed between reading and locking: transform again."""


def apply_replay(
    engine: sa.Engine,
    target: Target,
    source: SourceObject,
    replay: ReplayBatch,
    staged: StagedBatch,
    *,
    data: dict[str, pa.Table] | None = None,
    flow_run_id: str | None = None,
    now: datetime | None = None,
) -> ReplayOutcome:
    """The replay's one transaction. Raises _Changed (after rolling back) when the rejects moved."""
    now = now or datetime.now(UTC)
    schema = target.schema
    params = {
        "bucket": source.bucket,
        "key": source.key,
        "etag": source.etag,
        "source_key": source.key,
        "source_etag": source.etag,
        "batch_hour": source.batch_hour,
        **source.lineage_pointers,
        "flow_run_id": flow_run_id,
        "loaded_at": now,
    }
    with engine.begin() as conn:
        for stmt in statements(LEDGER_LOCK[target.name], schema):
            conn.execute(stmt)
        row = conn.execute(statement("replay/select_file_status_for_replay.sql", schema), params).first()
        status, counted = (row.status, row.rejected_count) if row is not None else (None, None)
        if status != "loaded":
            raise ReplayRefused(
                f"{source.uri} (ETag {source.etag}) is {status or 'not in the ledger'} now; "
                "it was replaced or reloaded while the replay ran"
            )
        current = rejected_lines(conn, schema, source)
        if {r.position for r in current} != {r.position for r in replay.rejected}:
            raise _Changed(f"{len(current)} rejected lines now, {len(replay.rejected)} transformed")

        copy_into_staging(conn, target, [staged], data)
        for stmt in statements("replay/keep_loaded_state_on_ties.sql", schema):
            conn.execute(stmt, params)
        # The load's merge; its fact MERGE is the shared file on both engines: the ledger lock above
        # keeps every load out, so the newest-wins rule may run as a statement before it.
        dims = conn.execute(statement("replay/count_new_dimension_rows.sql", schema), params).one()
        merge_dimensions(conn, schema, params)
        fact = conn.execute(statement("replay/count_fact_changes.sql", schema), params).one()
        write_load_files(conn, [_replayed_file(source)])
        conn.execute(statement("replay/name_the_replayed_file.sql", schema), params)
        merge_facts(conn, schema, params, "load/merge_into_fact_flats.sql")
        _, replaced, written = (max(conn.execute(stmt, params).rowcount, 0) for stmt in _snapshot_statements(schema))
        new_snapshots = max(written - replaced, 0)  # listings this object did not have a snapshot of
        reasons = conn.execute(statement("replay/update_still_rejected_reasons.sql", schema), params).rowcount
        conn.execute(statement("replay/delete_replayed_rejects.sql", schema), params)
        # and the lines past ETL_MAX_REJECTED_ROWS, which kept no row: counted in the ledger, still rejected
        omitted = max((counted or 0) - len(current), 0)
        left = omitted + int(conn.execute(statement("replay/count_file_rejects.sql", schema), params).scalar_one() or 0)
        inserted_facts, updated_facts = int(fact.inserted or 0), int(fact.updated or 0)
        conn.execute(
            statement("replay/update_ledger_after_replay.sql", schema),
            params
            | {
                "rejected_count": left,
                "rejected_by_reason": replayed_reasons(row.rejected_by_reason, replay),
                "listings_added": new_snapshots,
                "fact_inserted": inserted_facts,
                "fact_updated": updated_facts,
                "flagged_added": replay.batch.stats.flagged,  # only accepted lines carry flags: the recovered ones
            },
        )
    still = replay.still_rejected
    recovered = replay.recovered
    return ReplayOutcome(
        status="replayed",
        bucket=source.bucket,
        key=source.key,
        etag=source.etag,
        lines_replayed=len(replay.rejected),
        recovered=len(recovered),
        still_rejected=len(still),
        reasons_changed=max(reasons, 0),
        fact_inserted=inserted_facts,
        fact_updated=updated_facts,
        fact_stale=int(fact.staged or 0) - inserted_facts - updated_facts,
        snapshots_inserted=new_snapshots,
        snapshots_replaced=replaced,
        dim_city_inserted=int(dims.city_inserted or 0),
        dim_address_inserted=int(dims.address_inserted or 0),
        dim_agency_inserted=int(dims.agency_inserted or 0),
        rejected_before=len(current),
        rejected_after=left,
        staged_prefix=f"s3://{staged.bucket}/{staged.prefix}",
    )


def _describe(outcome: ReplayOutcome, replay: ReplayBatch | None) -> ReplayOutcome:
    if replay is None:
        return outcome
    still = replay.still_rejected
    outcome.lines = [
        (r.member, r.line_number, "rejected" if r.position in still else "recovered", still.get(r.position, ""))
        for r in replay.rejected
    ]
    outcome.still_rejected_by_reason = dict(Counter(reason_code(r) for r in still.values()))
    return outcome


def replay_file(
    engine: sa.Engine,
    target: Target,
    s3,
    source: SourceObject,
    archive_path: str | Path | bytes,
    settings: Settings,
    flow_run_id: str | None = None,
) -> ReplayOutcome:
    """Replay every rejected line of `source` (a loaded version whose bytes are at archive_path), under the
    pipeline's settings: its staging place, its caps on members and lines, its masking and pseudonyms."""
    masker, pseudonyms = settings.masker(), settings.pseudonymizer()
    started = time.perf_counter()
    base = dict(bucket=source.bucket, key=source.key, etag=source.etag)
    replay = None
    for round_ in range(1, MAX_ROUNDS + 1):
        with engine.connect() as conn:
            rejected = rejected_lines(conn, target.schema, source)
        if not rejected:
            outcome = ReplayOutcome(status="nothing to replay", rounds=round_, **base)
            break
        check_masking(source, rejected, masker)
        lines = pick_lines(
            archive_path,
            source.uri,
            [r.position for r in rejected],
            max_member_bytes=settings.max_member_bytes,
            max_line_bytes=settings.max_line_bytes,
            max_members=settings.max_members,
        )
        replay = transform_rejected(lines, rejected, masker, pseudonyms)
        if replay.changes_nothing:
            outcome = ReplayOutcome(
                status="unchanged",
                lines_replayed=len(rejected),
                still_rejected=len(rejected),
                rejected_before=len(rejected),
                rejected_after=len(rejected),
                rounds=round_,
                **base,
            )
            break
        staged = stage_replay(
            s3,
            replay,
            bucket=settings.staging_bucket,
            staging_prefix=settings.staging_prefix,
            etag=source.etag,
            masked=masker is not None,
        )
        data = replay.batch.tables if target.name == "postgresql" else None
        try:
            outcome = apply_replay(engine, target, source, replay, staged, data=data, flow_run_id=flow_run_id)
        except _Changed:
            continue
        outcome.rounds = round_
        break
    else:
        raise RuntimeError(
            f"{source.uri}: its rejected lines kept changing during {MAX_ROUNDS} replay attempts "
            "(another replay or a reload running at the same time?); run the replay again"
        )
    outcome.seconds = round(time.perf_counter() - started, 3)
    return _describe(outcome, replay)


# ---- lineage ------------------------------------------------------------------------------------

ARTIFACT_ROWS = 1000


def replay_rows(outcome: ReplayOutcome) -> list[dict[str, Any]]:
    """One row per replayed line (the first ARTIFACT_ROWS): where it is, what became of it, why."""
    return [{"member": m, "line_number": n, "outcome": o, "reason": r} for m, n, o, r in outcome.lines[:ARTIFACT_ROWS]]


def replay_markdown(outcome: ReplayOutcome) -> str:
    uri = f"s3://{outcome.bucket}/{outcome.key}"
    lines = [
        f"### Replay of the rejected lines of {code(uri)}: **{outcome.status}**",
        "",
        f"- ETag {code(outcome.etag)}, transform v{TRANSFORM_VERSION}",
    ]
    if outcome.status == "nothing to replay":
        lines.append("- the version has no rejected lines")
    else:
        reasons = ", ".join(f"{text(k)}: {v}" for k, v in sorted(outcome.still_rejected_by_reason.items())) or "none"
        lines.append(
            f"- {outcome.lines_replayed:,} rejected lines replayed: {outcome.recovered:,} recovered, "
            f"{outcome.still_rejected:,} still rejected ({reasons}), {outcome.reasons_changed} reasons changed"
        )
    if outcome.status == "replayed":
        lines.append(
            f"- fact_flats: {outcome.fact_inserted} inserted, {outcome.fact_updated} updated, "
            f"{outcome.fact_stale} older than or as new as the warehouse's (kept)"
        )
        lines.append(
            f"- flat_snapshots: {outcome.snapshots_inserted} inserted, {outcome.snapshots_replaced} "
            "replaced by a newer version from the same object; the object's other snapshots untouched"
        )
        lines.append(
            f"- dimensions: {outcome.dim_city_inserted} cities, {outcome.dim_address_inserted} addresses, "
            f"{outcome.dim_agency_inserted} agencies new"
        )
        lines.append(
            f"- rejected_records of the version: {outcome.rejected_before} → {outcome.rejected_after} "
            "(ledger rejected_count updated)"
        )
        lines.append(f"- staged in {code(outcome.staged_prefix)}")
    elif outcome.status == "unchanged":
        lines.append("- nothing recovered and every reason as before: nothing was written")
    lines.append(f"- took {outcome.seconds:.2f} s")
    return "\n".join(lines)
