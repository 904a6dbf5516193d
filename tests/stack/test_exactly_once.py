"""Exactly once, for real: a correction restates its key, a late load of an old version is refused, and
concurrent loads on PostgreSQL keep the newest listing version.

Each test drives the one load, a file at a time (`load_staged_batch`), on the real PostgreSQL of the local stack with batches made from the
real sample's records. The concurrency tests run two loads in two threads, each on its own connection,
and pause one of them at a statement boundary (SQLAlchemy's `before_cursor_execute` on that load's own
engine: the driver call itself, nothing of ours replaced).
"""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from berlin_rentals.archive import iter_lines
from berlin_rentals.source import SourceObject
from berlin_rentals.staging import StagedBatch, staged_prefix
from berlin_rentals.synthetic import read_sample_records, zip_records
from berlin_rentals.transform import transform_lines
from berlin_rentals.warehouse.ddl import make_engine
from berlin_rentals.warehouse.engines import PostgresTarget
from berlin_rentals.warehouse.load import LoadReport, load_staged_batch
from tests.helpers import query, scalar, wait_for

RECORDS = read_sample_records()
A, B, C = (int(RECORDS[i]["data"]["id"]) for i in range(3))  # the sample's first three listings
DAY = datetime(2019, 1, 13, tzinfo=UTC)


def version(index: int, *, rent: float, modified: datetime, **changes: str) -> dict:
    """Sample listing `index` as the producer might send it: its base rent, `modification` and any field."""
    data = dict(RECORDS[index]["data"])
    stamp = modified.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    data.update(realEstate_baseRent=rent, modification=stamp, realEstate_lastModificationDate=stamp, **changes)
    return {"ok": True, "data": data}


def etag_of(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()  # what S3 answers for a single-part upload


def load(
    settings,
    key: str,
    records: list[dict],
    *,
    uploaded: datetime,
    engine: sa.Engine | None = None,
    force: bool = False,
    run: str = "run",
    max_line_bytes: int = 64 * 1024**2,
) -> tuple[LoadReport, str]:
    body = zip_records("batch.json", records)
    etag = etag_of(body)
    batch = transform_lines(iter_lines(body, key, max_line_bytes=max_line_bytes))
    source = SourceObject(settings.raw_bucket, key, etag, len(body), uploaded)
    staged = StagedBatch(
        settings.staging_bucket, staged_prefix("clean/", etag), {n: batch.rows(n) for n in batch.tables}
    )
    own = engine is None
    engine = engine or make_engine(settings.warehouse_url)
    try:
        report = load_staged_batch(
            engine,
            PostgresTarget(settings.warehouse_schema),
            source,
            staged,
            batch.stats,
            data=batch.tables,
            force=force,
            flow_run_id=f"{run}-{etag[:8]}",
        )
    finally:
        if own:
            engine.dispose()
    return report, etag


def facts(settings) -> dict[int, tuple]:
    rows = query(settings, "SELECT listing_id, base_rent, source_key, source_etag FROM {schema}.fact_flats")
    return {r.listing_id: (r.base_rent, r.source_key, r.source_etag) for r in rows}


def ledger(settings, key: str) -> dict[str, str]:
    return dict(query(settings, "SELECT etag, status FROM {schema}.load_ledger WHERE key = :k", k=key))


# ---- 1. a correction restates its key ------------------------------------------------------------


def test_a_correction_replaces_the_facts_and_dimensions_of_the_version_it_supersedes(settings):
    key = "raw/k/immobilienscout24_berlin_20190113_15.zip"
    wrong = version(0, rent=9999, modified=DAY + timedelta(days=1, hours=12), contactDetails_email="wrong@example.org")
    only_in_e1 = version(
        1,
        rent=777,
        modified=DAY + timedelta(hours=9),
        companyWideCustomerId="agency-only-in-e1",
        realEstate_address_street="Nurhierstrasse",
    )
    _, e1 = load(settings, key, [wrong, only_in_e1], uploaded=DAY + timedelta(hours=15, minutes=1))
    assert facts(settings)[A] == (Decimal("9999.00"), key, e1)

    right = version(0, rent=500, modified=DAY + timedelta(hours=12), contactDetails_email="right@example.org")
    report, e2 = load(settings, key, [right], uploaded=DAY + timedelta(hours=15, minutes=30))

    assert report.status == "loaded"
    assert ledger(settings, key) == {e1: "superseded", e2: "loaded"}
    # A is the correction's; B only the superseded version had: it is gone, not left standing from E1.
    assert facts(settings) == {A: (Decimal("500.00"), key, e2)}
    assert (report.fact_inserted, report.fact_updated, report.fact_stale) == (0, 1, 0)
    agency_of_a = scalar(settings, "SELECT agency_id FROM {schema}.fact_flats WHERE listing_id = :a", a=A)
    assert scalar(settings, "SELECT email FROM {schema}.dim_agency WHERE agency_id = :g", g=agency_of_a) == (
        "right@example.org"
    )
    # The agency and the address only E1's B supplied are removed with it.
    assert query(settings, "SELECT customer_id FROM {schema}.dim_agency") == [
        (RECORDS[0]["data"].get("companyWideCustomerId"),)
    ]
    assert query(settings, "SELECT street FROM {schema}.dim_address WHERE street = 'Nurhierstrasse'") == []
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.flat_snapshots WHERE source_etag <> :e", e=e2) == 0


def test_a_correction_falls_back_to_the_newest_snapshot_of_each_listing_in_another_file(settings):
    other, key = "raw/k/immobilienscout24_berlin_20190113_14.zip", "raw/k/immobilienscout24_berlin_20190113_15.zip"
    _, f = load(
        settings,
        other,
        [
            version(0, rent=700, modified=DAY + timedelta(hours=8)),
            version(1, rent=800, modified=DAY + timedelta(hours=8)),
            version(2, rent=600, modified=DAY + timedelta(hours=10)),
        ],
        uploaded=DAY + timedelta(hours=14, minutes=1),
    )
    late = DAY + timedelta(days=1, hours=12)  # the producer's mistake: a day too late
    _, e1 = load(
        settings,
        key,
        [
            version(0, rent=9999, modified=late),
            version(1, rent=9999, modified=late),
            version(2, rent=9999, modified=late),
        ],
        uploaded=DAY + timedelta(hours=15, minutes=1),
    )
    assert {listing: row[0] for listing, row in facts(settings).items()} == {A: 9999, B: 9999, C: 9999}

    report, e2 = load(
        settings,
        key,
        [
            version(0, rent=500, modified=DAY + timedelta(hours=12)),
            version(2, rent=650, modified=DAY + timedelta(hours=9)),
        ],
        uploaded=DAY + timedelta(hours=15, minutes=30),
    )
    assert report.status == "loaded"
    assert facts(settings) == {
        A: (Decimal("500.00"), key, e2),  # the correction's version is the newest there is
        B: (Decimal("800.00"), other, f),  # the correction dropped it: the other file's snapshot stands
        C: (Decimal("600.00"), other, f),  # the other file's 10:00 is newer than the correction's 09:00
    }
    rebuilt = query(
        settings,
        "SELECT last_modified_at, batch_hour, address_id FROM {schema}.fact_flats WHERE listing_id = :c",
        c=C,
    )[0]
    assert rebuilt.last_modified_at == DAY + timedelta(hours=10) and rebuilt.batch_hour == DAY + timedelta(hours=14)
    assert rebuilt.address_id is not None
    assert ledger(settings, key) == {e1: "superseded", e2: "loaded"}


def test_a_forced_reload_removes_the_facts_of_listings_the_version_no_longer_yields(settings):
    key = "raw/k/immobilienscout24_berlin_20190113_15.zip"
    padded = version(1, rent=777, modified=DAY + timedelta(hours=9), realEstate_descriptionNote="Altbau. " * 8000)
    records = [version(0, rent=500, modified=DAY + timedelta(hours=12)), padded]
    _, etag = load(settings, key, records, uploaded=DAY + timedelta(hours=15, minutes=1))
    assert set(facts(settings)) == {A, B}

    # The same version again under a stricter line limit: B's line is rejected now, so B has no source left.
    report, again = load(
        settings,
        key,
        records,
        uploaded=DAY + timedelta(hours=15, minutes=1),
        force=True,
        max_line_bytes=len(json.dumps(records[0], ensure_ascii=False).encode()) + 1,
    )
    assert again == etag and report.status == "loaded" and report.rejected == 1
    assert facts(settings) == {A: (Decimal("500.00"), key, etag)}
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.rejected_records WHERE source_key = :k", k=key) == 1


# ---- 2. a late load of an old version is refused -------------------------------------------------


def test_a_late_load_of_an_old_version_does_not_undo_its_correction(settings):
    key = "raw/k/immobilienscout24_berlin_20190113_15.zip"
    old = [version(0, rent=9999, modified=DAY + timedelta(hours=11))]
    new = [version(0, rent=500, modified=DAY + timedelta(hours=12))]
    first_upload, correction_upload = DAY + timedelta(hours=15, minutes=1), DAY + timedelta(hours=15, minutes=30)
    _, e1 = load(settings, key, old, uploaded=first_upload)
    _, e2 = load(settings, key, new, uploaded=correction_upload)

    # E1's load task retrying after E2 loaded (its HEAD, and so its LastModified, predate the correction),
    # and a forced rerun of E1: both refused as superseded, neither parked.
    for force in (False, True):
        report, again = load(settings, key, old, uploaded=first_upload, force=force, run="retry")
        assert again == e1
        assert report.status == "superseded", report
        assert e2 in report.reason
        assert ledger(settings, key) == {e1: "superseded", e2: "loaded"}
        assert facts(settings) == {A: (Decimal("500.00"), key, e2)}
    attempts, error = query(settings, "SELECT attempts, error FROM {schema}.load_ledger WHERE etag = :e", e=e1)[0]
    assert attempts == 0 and "superseded" in error

    # The same bytes uploaded again later are the newest version of the key: they load (a correction).
    report, _ = load(settings, key, old, uploaded=DAY + timedelta(hours=16))
    assert report.status == "loaded"
    assert ledger(settings, key) == {e1: "loaded", e2: "superseded"}
    assert facts(settings)[A] == (Decimal("9999.00"), key, e1)


def test_an_old_version_loading_while_its_correction_commits_waits_and_is_refused(settings):
    """E1's load starts while E2's is about to commit: it must decide after E2 has, not before."""
    key = "raw/k/immobilienscout24_berlin_20190113_15.zip"
    earlier = "raw/k/immobilienscout24_berlin_20190113_09.zip"  # the listing and its dimension rows exist
    _, f = load(settings, earlier, [version(0, rent=400, modified=DAY + timedelta(hours=8))], uploaded=DAY)
    new_engine = make_engine(settings.warehouse_url)
    pause = Pause(new_engine, f"UPDATE {settings.warehouse_schema}.load_ledger SET status = 'loaded'")
    correction = Load(
        settings,
        key,
        [version(0, rent=500, modified=DAY + timedelta(hours=12))],
        uploaded=DAY + timedelta(hours=15, minutes=30),
        engine=new_engine,
    )
    old = Load(
        settings, key, [version(0, rent=9999, modified=DAY + timedelta(hours=11))], uploaded=DAY + timedelta(hours=15)
    )
    try:
        correction.start()
        assert pause.reached.wait(60), correction.error
        old.start()
        wait_for(
            lambda: query(settings, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"),
            30,
            "the old version's load to wait for the correction's transaction",
        )
    finally:
        pause.go.set()
        correction.join(60)
        old.join(60)
        new_engine.dispose()
    assert correction.error is None and old.error is None
    assert (correction.result[0].status, old.result[0].status) == ("loaded", "superseded")
    e2, e1 = correction.result[1], old.result[1]
    assert ledger(settings, key) == {e1: "superseded", e2: "loaded"} and ledger(settings, earlier) == {f: "loaded"}
    assert facts(settings) == {A: (Decimal("500.00"), key, e2)}


# ---- 3. concurrent loads on PostgreSQL -----------------------------------------------------------


class Pause:
    """Hold one load's connection just before it sends a statement, until the test lets it go on."""

    def __init__(self, engine: sa.Engine, starts_with: str) -> None:
        self.starts_with, self.reached, self.go = starts_with, threading.Event(), threading.Event()
        sa.event.listen(engine, "before_cursor_execute", self._before)

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if " ".join(statement.split()).startswith(self.starts_with) and not self.reached.is_set():
            self.reached.set()
            if not self.go.wait(60):
                raise TimeoutError("the test never released the paused load")


class Load(threading.Thread):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(daemon=True)
        self.args, self.kwargs, self.result, self.error = args, kwargs, None, None

    def run(self) -> None:
        try:
            self.result = load(*self.args, **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc


def _apart(index: int, rent: float, modified: datetime, where: str) -> dict:
    """A version of listing `index` whose city, address and agency no other load of the test has: the two
    loads then share no dimension row, so no dimension lock orders them."""
    return version(
        index,
        rent=rent,
        modified=modified,
        realEstate_address_geoHierarchy_city_name=f"Berlin {where}",
        realEstate_address_city=f"Berlin {where}",
        realEstate_address_street=f"{where}strasse",
        companyWideCustomerId=f"agency-{where}",
    )


NEWER, OLDER = DAY + timedelta(hours=12), DAY + timedelta(hours=10)
NEW_KEY, OLD_KEY = "raw/x/immobilienscout24_berlin_20190113_13.zip", "raw/y/immobilienscout24_berlin_20190113_11.zip"


def test_an_older_listing_version_staged_before_a_newer_one_committed_does_not_overwrite_it(settings):
    """The older load checks staleness, then the newer load commits, then the older load writes."""
    old_engine = make_engine(settings.warehouse_url)
    pause = Pause(old_engine, f"MERGE INTO {settings.warehouse_schema}.fact_flats")
    older = Load(
        settings, OLD_KEY, [_apart(0, 1000, OLDER, "Alt")], uploaded=OLDER + timedelta(hours=2), engine=old_engine
    )
    try:
        older.start()
        assert pause.reached.wait(60), older.error
        report, new_etag = load(settings, NEW_KEY, [_apart(0, 2000, NEWER, "Neu")], uploaded=NEWER + timedelta(hours=2))
        assert report.status == "loaded"
    finally:
        pause.go.set()
        older.join(60)
        old_engine.dispose()
    assert older.error is None and older.result[0].status == "loaded"
    assert facts(settings)[A] == (Decimal("2000.00"), NEW_KEY, new_etag)
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.flat_snapshots WHERE listing_id = :a", a=A) == 2


def test_an_older_listing_version_waiting_on_a_newer_ones_row_lock_does_not_overwrite_it(settings):
    """The newer load has updated the listing and not committed; the older one's write waits on that row,
    then must see the newer version it waited for."""
    load(
        settings,
        "raw/z/immobilienscout24_berlin_20190113_09.zip",
        [_apart(0, 800, DAY + timedelta(hours=8), "Erst")],
        uploaded=DAY + timedelta(hours=9, minutes=1),
    )
    new_engine = make_engine(settings.warehouse_url)
    pause = Pause(new_engine, f"UPDATE {settings.warehouse_schema}.load_ledger SET status = 'loaded'")
    newer = Load(
        settings, NEW_KEY, [_apart(0, 2000, NEWER, "Neu")], uploaded=NEWER + timedelta(hours=2), engine=new_engine
    )
    older = Load(settings, OLD_KEY, [_apart(0, 1000, OLDER, "Alt")], uploaded=OLDER + timedelta(hours=2))
    try:
        newer.start()
        assert pause.reached.wait(60), newer.error
        older.start()
        wait_for(
            lambda: query(
                settings,
                """SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                   AND query LIKE 'MERGE INTO ' || :s || '.fact_flats%'""",
                s=settings.warehouse_schema,
            ),
            30,
            "the older load's MERGE to wait on the newer load's row lock",
        )
    finally:
        pause.go.set()
        newer.join(60)
        older.join(60)
        new_engine.dispose()
    assert newer.error is None and newer.result[0].status == "loaded"
    assert older.error is None and older.result[0].status == "loaded"
    assert facts(settings)[A] == (Decimal("2000.00"), NEW_KEY, newer.result[1])
