"""Many files in one load transaction (berlin_rentals/warehouse/load.py), on the stack's PostgreSQL.

The decisive check of the one load's semantics: a batch of files with overlapping listings (newer, older and equally new versions of
one listing in several files, an agency whose contact changes, rejected lines) leaves every table as the
same files loaded one by one, in the batch's order, leave it, starting from a warehouse that already
holds some of them. Run ids and load times differ by design and are left out of the comparison.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from berlin_rentals.archive import iter_lines
from berlin_rentals.source import SourceObject
from berlin_rentals.staging import StagedBatch, staged_prefix
from berlin_rentals.synthetic import read_sample_records, zip_lines
from berlin_rentals.transform import transform_lines
from berlin_rentals.warehouse.ddl import create_warehouse, make_engine
from berlin_rentals.warehouse.engines import PostgresTarget
from berlin_rentals.warehouse.load import LOADED_MEANWHILE, BatchFile, load_staged_batch, load_staged_files
from berlin_rentals.warehouse.sql import statements
from tests.helpers import WAREHOUSE_TABLES, query, wait_for
from tests.stack.test_exactly_once import A, B, Pause, _apart, etag_of, version

RECORDS = read_sample_records()
DAY = datetime(2019, 1, 13, tzinfo=UTC)
# Left out of the comparison: who loaded a row and when (a batch records its own run, once for all files).
RUN_COLUMNS = {"flow_run_id", "loaded_at", "rejected_at", "started_at", "finished_at"}
TABLES = WAREHOUSE_TABLES


def staged_file(settings, hour: int, records: list[dict], *, bad_lines: int = 0) -> tuple[BatchFile, dict]:
    """A file of the hour `hour` of DAY: its source, its staged batch (the transform's real output) and tables."""
    key = f"raw/batch/immobilienscout24_berlin_20190113_{hour:02d}.zip"
    lines = [json.dumps(r).encode() for r in records] + [b'{"ok": true, "data": {"id": "not a number"}}'] * bad_lines
    body = zip_lines("batch.json", lines)
    etag = etag_of(body)
    batch = transform_lines(iter_lines(body, key))
    source = SourceObject(settings.raw_bucket, key, etag, len(body), DAY + timedelta(hours=hour, minutes=1))
    staged = StagedBatch(
        settings.staging_bucket, staged_prefix("clean/", etag), {n: batch.rows(n) for n in batch.tables}
    )
    return BatchFile(source, staged, batch.stats, attempt=None), batch.tables


def _single(settings, file: BatchFile, tables: dict, engine: sa.Engine, run: str = "event-run"):
    """One file's own load (the one load with one file), as an event-driven run loads it."""
    return load_staged_batch(
        engine,
        PostgresTarget(settings.warehouse_schema),
        file.source,
        file.staged,
        file.stats,
        data=tables,
        flow_run_id=run,
    )


def one_by_one(settings, files: list[tuple[BatchFile, dict]]) -> None:
    engine = make_engine(settings.warehouse_url)
    try:
        for file, tables in sorted(files, key=lambda f: (f[0].source.batch_hour, f[0].source.key)):
            assert _single(settings, file, tables, engine, run="single").status == "loaded"
    finally:
        engine.dispose()


def as_batch(settings, files: list[tuple[BatchFile, dict]], batch_id: str = "batch-1", force: bool = False):
    engine = make_engine(settings.warehouse_url)
    try:
        return load_staged_files(
            engine,
            PostgresTarget(settings.warehouse_schema),
            [f for f, _ in files],
            run_id=batch_id,
            data={f.source.etag: tables for f, tables in files},
            force=force,
        )
    finally:
        engine.dispose()


def state(settings, schema: str) -> dict[str, list[tuple]]:
    """Every table's rows, without the run columns, in a stable order."""
    engine = make_engine(settings.warehouse_url)
    try:
        with engine.connect() as conn:
            out = {}
            for table in TABLES:
                columns = [
                    c for c in sa.inspect(conn).get_columns(table, schema=schema) if c["name"] not in RUN_COLUMNS
                ]
                names = ", ".join(c["name"] for c in columns)
                rows = conn.execute(sa.text(f"SELECT {names} FROM {schema}.{table}")).all()
                out[table] = sorted((tuple(r) for r in rows), key=repr)
            return out
    finally:
        engine.dispose()


@pytest.fixture
def twin(settings, monkeypatch):
    """A second fresh schema beside `settings`' (the one-by-one side)."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    create_warehouse(settings.warehouse_url, schema)
    other = type(settings).from_env({**os.environ, "WAREHOUSE_SCHEMA": schema, "WAREHOUSE_BI_SCHEMA": f"{schema}_bi"})
    yield other
    engine = make_engine(settings.warehouse_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


def overlapping_files(settings) -> tuple[list, list]:
    """(files already loaded before the batch, the batch's files): the same listings in several files."""
    t = DAY + timedelta(hours=8)
    before = [staged_file(settings, 6, [version(0, rent=600, modified=t), version(1, rent=700, modified=t)])]
    batch = [
        # 0: newer than the warehouse's; 2: new; 3: new, and newer again in hour 12
        staged_file(
            settings,
            10,
            [
                version(0, rent=610, modified=t + timedelta(hours=2)),
                version(2, rent=800, modified=t + timedelta(hours=1), contactDetails_email="old@example.org"),
                version(3, rent=900, modified=t),
            ],
            bad_lines=2,
        ),
        # 1: older than the warehouse's (stale); 2: newer, and its agency's contact changes; 4: new
        staged_file(
            settings,
            11,
            [
                version(1, rent=650, modified=t - timedelta(hours=1)),
                version(2, rent=820, modified=t + timedelta(hours=3), contactDetails_email="new@example.org"),
                version(4, rent=1000, modified=t),
            ],
        ),
        # 3: newer; 4: as new as hour 11's (the first stays); 0: older than hour 10's
        staged_file(
            settings,
            12,
            [
                version(3, rent=950, modified=t + timedelta(hours=4)),
                version(4, rent=1111, modified=t),
                version(0, rent=605, modified=t + timedelta(hours=1)),
            ],
            bad_lines=1,
        ),
    ]
    return before, batch


def test_a_batch_leaves_every_table_as_its_files_loaded_one_by_one(settings, twin):
    before, batch = overlapping_files(settings)
    one_by_one(settings, before + batch)
    one_by_one(twin, before)
    report = as_batch(twin, batch)

    assert len(report.loaded) == len(report.reports) == 3
    assert_same_tables(settings, twin)
    # The figures each file's ledger row holds are those of loading it alone, in its turn.
    hour10 = report.loaded[(batch[0][0].source.key, batch[0][0].source.etag)]
    assert (hour10.fact_inserted, hour10.fact_updated, hour10.fact_stale) == (2, 1, 0)
    hour12 = report.loaded[(batch[2][0].source.key, batch[2][0].source.etag)]
    assert (hour12.fact_inserted, hour12.fact_updated, hour12.fact_stale) == (0, 1, 2)
    assert hour12.rejected == 1


def assert_same_tables(settings, twin) -> None:
    expected, got = state(settings, settings.warehouse_schema), state(twin, twin.warehouse_schema)
    for table in TABLES:
        if got[table] != expected[table]:
            _print_differing_rows(expected[table], got[table])
        assert got[table] == expected[table], table


def test_the_batch_records_one_run_for_all_its_rows(twin):
    _, batch = overlapping_files(twin)
    as_batch(twin, batch, batch_id="batch-42")
    engine = make_engine(twin.warehouse_url)
    with engine.connect() as conn:
        schema = twin.warehouse_schema
        runs = conn.execute(sa.text(f"SELECT DISTINCT flow_run_id FROM {schema}.load_ledger")).scalars().all()
        facts = conn.execute(sa.text(f"SELECT DISTINCT flow_run_id FROM {schema}.fact_flats")).scalars().all()
        keys = conn.execute(sa.text(f"SELECT DISTINCT source_key FROM {schema}.flat_snapshots")).scalars().all()
    engine.dispose()
    assert runs == ["batch-42"] and facts == ["batch-42"]
    assert sorted(keys) == sorted(f.source.key for f, _ in batch)  # each snapshot with its own file's key


def test_a_file_loaded_meanwhile_drops_out_and_the_rest_loads(twin):
    _, batch = overlapping_files(twin)
    one_by_one(twin, [batch[1]])  # an event-driven run loaded hour 11 first
    report = as_batch(twin, batch)
    dropped = (batch[1][0].source.key, batch[1][0].source.etag)
    skipped = report.reports[dropped]
    assert (skipped.status, skipped.reason, skipped.ledger) == ("skipped", LOADED_MEANWHILE, "loaded")
    assert len(report.loaded) == 2
    engine = make_engine(twin.warehouse_url)
    with engine.connect() as conn:
        ledger = conn.execute(
            sa.text(f"SELECT key, flow_run_id, status FROM {twin.warehouse_schema}.load_ledger ORDER BY key")
        ).all()
    engine.dispose()
    assert [(r.flow_run_id, r.status) for r in ledger] == [
        ("batch-1", "loaded"),
        ("single", "loaded"),
        ("batch-1", "loaded"),
    ]


def test_a_correction_in_a_batch_restates_its_key_as_its_own_load_does(settings, twin):
    """A correction stays in the batch: what only the version it replaces said is removed (listing C and its
    address), or rebuilt from another key's snapshot (listing B), as loading the files one by one leaves it."""
    t = DAY + timedelta(hours=8)
    earlier = staged_file(settings, 9, [version(1, rent=500, modified=t - timedelta(hours=2))])
    first = staged_file(
        settings,
        10,
        [
            version(0, rent=600, modified=t),
            version(1, rent=9999, modified=t),
            version(2, rent=800, modified=t, realEstate_address_street="Nurhierstrasse"),
        ],
    )
    corrected = staged_file(settings, 10, [version(0, rent=650, modified=t)])  # same key, new content
    other = staged_file(settings, 11, [version(3, rent=700, modified=t)])
    for side in (settings, twin):
        one_by_one(side, [earlier])
        one_by_one(side, [first])
    one_by_one(settings, [corrected])
    one_by_one(settings, [other])
    report = as_batch(twin, [corrected, other])

    assert set(report.loaded) == {corrected[0].id, other[0].id}
    assert_same_tables(settings, twin)
    rents = dict(query(twin, "SELECT listing_id, base_rent FROM {schema}.fact_flats"))
    assert rents == {A: Decimal("650.00"), B: Decimal("500.00"), int(RECORDS[3]["data"]["id"]): Decimal("700.00")}
    ledger = dict(query(twin, "SELECT etag, status FROM {schema}.load_ledger WHERE key = :k", k=first[0].source.key))
    assert ledger == {first[0].source.etag: "superseded", corrected[0].source.etag: "loaded"}
    assert (report.loaded[corrected[0].id].fact_inserted, report.loaded[corrected[0].id].fact_updated) == (0, 1)


def test_a_file_older_than_its_keys_loaded_version_is_refused_inside_the_batch_even_forced(twin):
    t = DAY + timedelta(hours=8)
    old = staged_file(twin, 10, [version(0, rent=9999, modified=t)])
    new = replace_source(staged_file(twin, 10, [version(0, rent=650, modified=t)]), minutes=30)
    other = staged_file(twin, 11, [version(1, rent=700, modified=t)])
    one_by_one(twin, [new])
    for force in (False, True):
        report = as_batch(twin, [old, other], batch_id=f"batch-{force}", force=force)
        refused = report.reports[old[0].id]
        assert refused.status == "superseded" and new[0].source.etag in refused.reason
        assert report.reports[other[0].id].status == "loaded"
    rents = dict(query(twin, "SELECT listing_id, base_rent FROM {schema}.fact_flats"))
    assert rents == {A: Decimal("650.00"), B: Decimal("700.00")}
    ledger = dict(query(twin, "SELECT etag, status FROM {schema}.load_ledger WHERE key = :k", k=old[0].source.key))
    assert ledger == {old[0].source.etag: "superseded", new[0].source.etag: "loaded"}


def test_of_two_versions_of_a_key_in_one_batch_the_newer_loads_and_the_older_is_superseded(twin):
    t = DAY + timedelta(hours=8)
    old = staged_file(twin, 10, [version(0, rent=9999, modified=t), version(1, rent=9999, modified=t)])
    new = replace_source(staged_file(twin, 10, [version(0, rent=650, modified=t)]), minutes=30)
    report = as_batch(twin, [new, old])
    assert report.reports[new[0].id].status == "loaded"
    assert report.reports[old[0].id].status == "superseded" and "in the same load" in report.reports[old[0].id].reason
    assert dict(query(twin, "SELECT listing_id, base_rent FROM {schema}.fact_flats")) == {A: Decimal("650.00")}


def test_a_forced_batch_reloads_a_loaded_file_and_removes_what_it_no_longer_yields(twin):
    t = DAY + timedelta(hours=8)
    file = staged_file(twin, 10, [version(0, rent=600, modified=t), version(1, rent=700, modified=t)])
    one_by_one(twin, [file])
    assert as_batch(twin, [file]).reports[file[0].id].status == "skipped"
    # The same version, its listing B now rejected (as a stricter transform would): B has no source left.
    fewer = BatchFile(file[0].source, file[0].staged, file[0].stats)
    tables = {
        n: (t.filter([int(i) != B for i in t["listing_id"].to_pylist()]) if "listing_id" in t.column_names else t)
        for n, t in file[1].items()
    }
    report = as_batch(twin, [(fewer, tables)], batch_id="forced", force=True)
    assert report.reports[file[0].id].status == "loaded"
    assert dict(query(twin, "SELECT listing_id, base_rent FROM {schema}.fact_flats")) == {A: Decimal("600.00")}


def replace_source(file: tuple[BatchFile, dict], *, minutes: int) -> tuple[BatchFile, dict]:
    """The file uploaded `minutes` later than staged_file says (a newer version of its key)."""
    batch_file, tables = file
    source = dataclasses.replace(
        batch_file.source, last_modified=batch_file.source.last_modified + timedelta(minutes=minutes)
    )
    return dataclasses.replace(batch_file, source=source), tables


def test_two_files_with_one_etag_are_never_one_batch(twin):
    file, tables = staged_file(twin, 10, [version(0, rent=600, modified=DAY)])
    copy = BatchFile(
        SourceObject(twin.raw_bucket, "raw/batch/copy.zip", file.source.etag, 1, DAY), file.staged, file.stats
    )
    with pytest.raises(ValueError, match="same ETag"):
        as_batch(twin, [(file, tables), (copy, tables)])


def _print_differing_rows(a, b):
    for x, y in zip(a, b, strict=False):
        if x != y:
            print("one-by-one", x)
            print("batch     ", y)


# ---- a batch beside concurrent single-file loads (PostgreSQL runs loads at once) -----------------


class _Thread(threading.Thread):
    def __init__(self, target) -> None:
        super().__init__(daemon=True)
        self.target, self.result, self.error = target, None, None

    def run(self) -> None:
        try:
            self.result = self.target()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc


def test_a_file_an_event_driven_run_is_loading_drops_out_of_the_batch_that_waited_for_it(twin):
    """The event's load holds the file's key (claimed, not committed) when the batch starts: the batch waits on
    that key's lock, then finds the file loaded and leaves it out; the rest of the batch loads."""
    _, batch = overlapping_files(twin)
    event_engine = make_engine(twin.warehouse_url)
    pause = Pause(event_engine, f"UPDATE {twin.warehouse_schema}.load_ledger SET status = 'loaded'")
    event = _Thread(lambda: _single(twin, *batch[1], event_engine))
    backfill = _Thread(lambda: as_batch(twin, batch))
    try:
        event.start()
        assert pause.reached.wait(60), event.error
        backfill.start()
        wait_for(
            lambda: query(
                twin, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pg_advisory%'"
            ),
            30,
            "the batch to wait on the key the event's load holds",
        )
    finally:
        pause.go.set()
        event.join(60)
        backfill.join(60)
        event_engine.dispose()
    assert event.error is None and backfill.error is None
    assert event.result.status == "loaded"
    dropped = batch[1][0].id
    skipped = backfill.result.with_status("skipped")
    assert list(skipped) == [dropped] and skipped[dropped].reason == LOADED_MEANWHILE
    assert len(backfill.result.loaded) == 2
    runs = dict(query(twin, "SELECT key, flow_run_id FROM {schema}.load_ledger WHERE status = 'loaded'"))
    assert runs[dropped[0]] == "event-run" and sorted(set(runs.values())) == ["batch-1", "event-run"]


def test_a_newer_version_an_event_loads_while_the_batch_runs_is_not_overwritten(twin):
    """The batch has picked each listing's newest version among its files, and not yet written them, when a
    load of another key (no lock in common) brings a newer version of one of its listings and commits: the
    batch's fact MERGE then finds that row and leaves it, since on PostgreSQL the newest-wins rule is part of
    the MERGE (sql/postgresql/merge_into_fact_flats.sql). A check in a statement before it would have read
    the older state, and the batch would have put the older version back."""
    t = DAY + timedelta(hours=8)
    # no dimension row in common: only the fact table orders the two loads
    old = staged_file(twin, 10, [_apart(0, 600, t, "Alt"), _apart(1, 700, t, "Alt")])
    newer = staged_file(twin, 14, [_apart(0, 999, t + timedelta(hours=5), "Neu")])
    batch_engine = make_engine(twin.warehouse_url)
    # after the batch picked its newest versions, before it writes the facts
    pause = Pause(batch_engine, f"MERGE INTO {twin.warehouse_schema}.fact_flats")
    backfill = _Thread(
        lambda: load_staged_files(
            batch_engine,
            PostgresTarget(twin.warehouse_schema),
            [old[0]],
            run_id="batch-1",
            data={old[0].source.etag: old[1]},
        )
    )
    event_engine = make_engine(twin.warehouse_url)
    event = _Thread(lambda: _single(twin, *newer, event_engine))
    try:
        backfill.start()
        assert pause.reached.wait(60), backfill.error
        event.start()
        event.join(60)
        assert not event.is_alive() and event.error is None  # nothing of the paused batch held it up
    finally:
        pause.go.set()
        backfill.join(60)
        event.join(60)
        batch_engine.dispose()
        event_engine.dispose()
    assert backfill.error is None and event.error is None
    rents = dict(query(twin, "SELECT listing_id, base_rent FROM {schema}.fact_flats"))
    assert rents[A] == Decimal("999.00") and rents[B] == Decimal("700.00")


def test_an_agencys_newer_details_from_a_concurrent_load_of_another_key_stand(twin):
    """Load A has dropped its staged agency rows that are not newer than the warehouse's and is about to
    MERGE them when load B (another key, no key lock in common) brings newer details of the same agency.
    B must wait for A's rows (postgresql/lock_dimension_rows.sql): had it committed in between, A's MERGE
    would put the older details back, the race the fact MERGE's in-statement rule avoids (issue #23)."""
    t = DAY + timedelta(hours=8)

    def shared_agency(rent: float, hours: int, where: str, phone: str) -> dict:
        # Each its own city and street (no dimension row in common that would order the loads), one agency.
        record = _apart(0, rent, t + timedelta(hours=hours), where)
        record["data"].update(companyWideCustomerId="agency-shared", contactDetails_phoneNumber=phone)
        return record

    first = staged_file(twin, 6, [shared_agency(600, 0, "Eins", "000")])
    older = staged_file(twin, 10, [shared_agency(610, 1, "Zwei", "111")])
    newer = staged_file(twin, 14, [shared_agency(620, 2, "Drei", "222")])
    engine = make_engine(twin.warehouse_url)
    _single(twin, *first, engine, run="first")
    a_engine, b_engine = make_engine(twin.warehouse_url), make_engine(twin.warehouse_url)
    pause = Pause(a_engine, f"MERGE INTO {twin.warehouse_schema}.dim_agency")
    a = _Thread(lambda: _single(twin, *older, a_engine, run="a"))
    b = _Thread(lambda: _single(twin, *newer, b_engine, run="b"))
    try:
        a.start()
        assert pause.reached.wait(60), a.error
        b.start()
        wait_for(
            lambda: (
                not b.is_alive()
                or query(
                    twin, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'"
                )
            ),
            30,
            "load B to finish or to wait on load A's agency rows",
        )
    finally:
        pause.go.set()
        a.join(60)
        b.join(60)
        for e in (engine, a_engine, b_engine):
            e.dispose()
    assert a.error is None and b.error is None
    assert [r.phone_number for r in query(twin, "SELECT phone_number FROM {schema}.dim_agency")] == ["222"]
    rents = dict(query(twin, "SELECT listing_id, base_rent FROM {schema}.fact_flats"))
    assert rents[A] == Decimal("620.00")


def test_a_load_takes_the_ledger_before_any_dimension_so_a_replay_never_deadlocks_with_it(twin):
    """A replay locks the ledger, then merges the dimensions (replay.py); a load must queue for the ledger
    before it holds any dimension, or each holds what the other waits for and PostgreSQL aborts one as a
    deadlock (#23 item 11b: the batch path merged the dimensions first and wrote the ledger last)."""
    schema = twin.warehouse_schema
    file = staged_file(twin, 6, [_apart(0, 600, DAY + timedelta(hours=8), "Eins")])
    replay_engine, load_engine = make_engine(twin.warehouse_url), make_engine(twin.warehouse_url)
    load = _Thread(lambda: _single(twin, *file, load_engine, run="load"))
    try:
        with replay_engine.begin() as replay:
            for stmt in statements("postgresql/lock_load_ledger_for_replay.sql", schema):
                replay.execute(stmt)
            load.start()
            wait_for(
                lambda: (
                    not load.is_alive() or query(twin, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                ),
                30,
                "the load to wait on the replay's ledger lock",
            )
            assert load.is_alive(), f"the load went past a replay's ledger lock: {load.error or load.result}"
            # What the replay's merge takes next; a lock the waiting load held on any of them would block it.
            replay.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
            tables = ", ".join(
                f"{schema}.{t}" for t in ("dim_city", "dim_district", "dim_address", "dim_agency", "dim_agent")
            )
            replay.execute(sa.text(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE"))
        load.join(60)
    finally:
        replay_engine.dispose()
        load_engine.dispose()
    assert load.error is None, load.error
    assert [tuple(r) for r in query(twin, "SELECT status FROM {schema}.load_ledger")] == [("loaded",)]
