"""Replaying rejected lines after a transform fix: the flow on the real stack (pure line picking:
tests/unit/test_replay.py).

The "fix" is simulated honestly, without mocking the project's code: a file is ingested with a small
ETL_MAX_LINE_BYTES, so its long lines are rejected `line_too_long`; the replay then runs with the
normal limit, under which those lines pass. Two other lines are bad for good and stay rejected.
"""

from __future__ import annotations

import contextvars
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from berlin_rentals.replay import rejected_lines
from berlin_rentals.replay_lines import (
    pick_lines,
    reason_code,
    transform_rejected,
)
from berlin_rentals.synthetic import batch_name, read_sample_records, revise, zip_lines
from flows.ingest import ingest_file
from flows.replay_rejects import replay_rejects
from tests.helpers import artifacts_of, query, scalar, upload
from tests.unit.test_replay import _line

REPO = Path(__file__).resolve().parents[2]

LIMIT = 38_000  # the sample's longest line is 36,174 bytes; padded lines are over 40,000
LONG_IDS = ("56906504", "45506939")  # recovered as new listings
NEWER_ID = "37221479"  # an older short line of it loads; its newer long line is recovered by the replay
PAD = "Altbau mit Stuck. " * 2300  # ~41 KB of description


def _padded(record: dict) -> dict:
    return {**record, "data": {**record["data"], "realEstate_descriptionNote": PAD}}


def mixed_batch(modified: datetime) -> tuple[bytes, str]:
    """(zip, member): 11 sample listings, 3 of them on lines too long for LIMIT, one of those with an
    older short line before it, a line that is not JSON and one with a rent that is no number, and a
    long line with a rent that is no number (too long now, still bad for another reason after the fix)."""
    records = {r["data"]["id"]: revise(r, rent_factor=1.0, modified=modified) for r in read_sample_records()}
    older = revise(
        read_sample_records()[[r["data"]["id"] for r in read_sample_records()].index(NEWER_ID)],
        rent_factor=0.9,
        modified=modified - timedelta(hours=1),
    )
    token = uuid.uuid4().hex  # unique bytes: the transform cache (by ETag) must not answer for another test
    lines = [_line(older)]
    for lid, record in records.items():
        lines.append(_line(_padded(record) if lid in (*LONG_IDS, NEWER_ID) else record))
    lines.insert(6, b'{"ok": true, "data": {"id": "' + token.encode())
    lines.append(
        _line(
            {
                "ok": True,
                "data": {"id": "77", "modification": "2019-01-12T11:32:11.975Z", "realEstate_baseRent": "viel"},
            }
        )
    )
    lines.append(
        _line(
            {
                "ok": True,
                "data": {
                    "id": "78",
                    "modification": "2019-01-12T11:32:11.975Z",
                    "realEstate_baseRent": "viel",
                    "realEstate_descriptionNote": PAD,
                },
            }
        )
    )
    # some are longer than rejected_records.raw_line keeps (65,535 bytes): the replay reads the object
    assert sum(len(line) > LIMIT for line in lines) == 4 and max(map(len, lines)) > 65_535
    member = f"{batch_name(modified)}.json"
    return zip_lines(member, lines), member


def ingest_with_small_limit(settings, s3, monkeypatch, modified: datetime, **upload_kw):
    body, member = mixed_batch(modified)
    key, etag = upload(s3, settings, batch_name(modified.replace(minute=0, second=0)) + ".zip", body, **upload_kw)
    monkeypatch.setenv("ETL_MAX_LINE_BYTES", str(LIMIT))
    state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    monkeypatch.delenv("ETL_MAX_LINE_BYTES")  # the "fixed" transform: the normal limit
    result = state.result()
    assert result["status"] == "loaded" and result["rejected"] == 6, result
    return key, etag, str(state.state_details.flow_run_id), member


def replay(settings, key, etag=None):
    state = replay_rejects(settings.raw_bucket, key, etag, return_state=True)
    return state, state.result(raise_on_failure=False)


def warehouse_state(settings) -> dict[str, list]:
    return {
        "fact_flats": query(
            settings,
            "SELECT listing_id, last_modified_at, base_rent, source_key, source_etag, "
            "source_line, flow_run_id, loaded_at FROM {schema}.fact_flats ORDER BY 1",
        ),
        "flat_snapshots": query(
            settings,
            "SELECT source_key, listing_id, last_modified_at, base_rent, flow_run_id, "
            "loaded_at FROM {schema}.flat_snapshots ORDER BY 1, 2",
        ),
        "rejected_records": query(
            settings,
            "SELECT source_key, member, line_number, reason, raw_line, flow_run_id, "
            "rejected_at FROM {schema}.rejected_records ORDER BY 1, 2, 3",
        ),
        "load_ledger": query(settings, "SELECT * FROM {schema}.load_ledger ORDER BY key, etag"),
        "dims": query(
            settings,
            "SELECT (SELECT COUNT(*) FROM {schema}.dim_city), (SELECT COUNT(*) FROM "
            "{schema}.dim_address), (SELECT COUNT(*) FROM {schema}.dim_agency)",
        ),
    }


def test_replay_recovers_the_fixed_lines_once_and_leaves_the_good_ones_alone(settings, s3, monkeypatch, capsys):
    modified = datetime(2031, 3, 1, 9, 10, tzinfo=UTC)
    key, etag, ingest_run, member = ingest_with_small_limit(settings, s3, monkeypatch, modified)
    before = warehouse_state(settings)
    assert len(before["fact_flats"]) == 9 and len(before["flat_snapshots"]) == 9
    reasons = {r.line_number: reason_code(r.reason) for r in before["rejected_records"]}
    assert sorted(reasons.values()) == ["invalid_value"] + ["line_too_long"] * 4 + ["not_json"]

    assert list_mode(capsys, "--list", "--since", "2031-03-01T00:00")[1:] == [
        f"s3://{settings.raw_bucket}/{key}  {etag}  2031-03-01 09:00  6 rejected"
    ]

    started = time.perf_counter()
    state, result = replay(settings, key)
    seconds = time.perf_counter() - started
    assert state.is_completed(), result
    replay_run = str(state.state_details.flow_run_id)
    assert (
        result["status"],
        result["etag"],
        result["lines_replayed"],
        result["recovered"],
        result["still_rejected"],
        result["reasons_changed"],
    ) == ("replayed", etag, 6, 3, 3, 1)
    assert (result["fact_inserted"], result["fact_updated"], result["fact_stale"]) == (2, 1, 0)
    assert (result["snapshots_inserted"], result["snapshots_replaced"]) == (2, 1)
    assert (result["rejected_before"], result["rejected_after"]) == (6, 3)
    print(f"replay of 6 rejected lines (3 recovered) took {seconds:.2f} s")

    after = warehouse_state(settings)
    facts = {row.listing_id: row for row in after["fact_flats"]}
    assert len(facts) == 11 and len(after["fact_flats"]) == 11
    good = {row.listing_id: row for row in before["fact_flats"] if str(row.listing_id) != NEWER_ID}
    assert all(facts[lid] == row for lid, row in good.items())  # loaded_at, flow_run_id, ... unchanged
    for lid in (*LONG_IDS, NEWER_ID):
        row = facts[int(lid)]
        assert (row.flow_run_id, row.source_key, row.source_etag, row.last_modified_at) == (
            replay_run,
            key,
            etag,
            modified,
        )
    # Snapshots: one per listing of the file; the good ones untouched, the older version of NEWER_ID replaced.
    snaps = {row.listing_id: row for row in after["flat_snapshots"]}
    assert len(after["flat_snapshots"]) == 11 and all(row.source_key == key for row in after["flat_snapshots"])
    assert all(snaps[row.listing_id] == row for row in before["flat_snapshots"] if str(row.listing_id) != NEWER_ID)
    assert snaps[int(NEWER_ID)].last_modified_at == modified and snaps[int(NEWER_ID)].flow_run_id == replay_run
    # rejected_records lost exactly the recovered lines; the bad ones keep their row and reason, and the
    # long one that is still bad now says why (with its whole raw line, as the current settings keep it).
    assert after["rejected_records"][:2] == [
        r for r in before["rejected_records"] if reason_code(r.reason) != "line_too_long"
    ]
    changed = after["rejected_records"][2]
    assert (reason_code(changed.reason), changed.flow_run_id) == ("invalid_value", replay_run)
    assert "realEstate_baseRent" in changed.reason and len(changed.raw_line.encode()) > LIMIT
    assert list_mode(capsys, "--list", "--since", "2031-03-01T00:00")[1].endswith("  3 rejected")
    ledger = after["load_ledger"][0]
    assert (ledger.status, ledger.rejected_count, ledger.flow_run_id) == ("loaded", 3, ingest_run)
    assert (ledger.listings, ledger.fact_inserted, ledger.fact_updated) == (11, 11, 1)

    # Lineage on the replay's run: every replayed line with its outcome, and a summary.
    deadline = time.monotonic() + 15
    while len(artifacts := artifacts_of(state.state_details.flow_run_id)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    (table,) = [a for a in artifacts if a.type == "table"]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    outcomes = sorted((r["outcome"], reason_code(r["reason"]) if r["reason"] else "") for r in rows)
    assert outcomes == [
        ("recovered", ""),
        ("recovered", ""),
        ("recovered", ""),
        ("rejected", "invalid_value"),
        ("rejected", "invalid_value"),
        ("rejected", "not_json"),
    ]
    (summary,) = [a for a in artifacts if a.type == "markdown"]
    assert (
        "**replayed**" in summary.data
        and "3 recovered" in summary.data
        and "invalid_value: 2, not_json: 1" in summary.data
    )

    # A second replay is a no-op: nothing recovered, every reason as before, nothing written.
    state, result = replay(settings, key)
    assert state.is_completed() and (result["status"], result["recovered"], result["still_rejected"]) == (
        "unchanged",
        0,
        3,
    )
    assert warehouse_state(settings) == after


def test_a_recovered_listing_never_overwrites_a_newer_state(settings, s3, monkeypatch, capsys):
    """A later file already holds a newer version of a listing whose line this file rejected."""
    modified = datetime(2031, 3, 2, 9, 10, tzinfo=UTC)
    records = {r["data"]["id"]: r for r in read_sample_records()}
    later = revise(records[LONG_IDS[0]], rent_factor=2.0, modified=modified + timedelta(hours=1))
    later_key, _ = upload(
        s3, settings, batch_name(modified + timedelta(hours=1)) + ".zip", zip_lines("later.json", [_line(later)])
    )
    assert ingest_file(settings.raw_bucket, later_key)["fact_inserted"] == 1
    newer = query(settings, "SELECT * FROM {schema}.fact_flats WHERE listing_id = :i", i=int(LONG_IDS[0]))

    key, etag, _, _ = ingest_with_small_limit(settings, s3, monkeypatch, modified)
    # Every loaded version with rejects since an hour, as an operator would after a fix (only this one here).
    lines = list_mode(capsys, "--all", "--since", "2031-03-02T00:00")
    assert lines[0].startswith("1 loaded version(s) with rejected lines")
    assert lines[1].endswith("6 rejected  -> replayed: 3 recovered, 3 still rejected")
    ledger = query(settings, "SELECT fact_inserted, rejected_count FROM {schema}.load_ledger WHERE key = :k", k=key)
    assert [tuple(r) for r in ledger] == [(9 + 1, 3)]  # 9 by the ingest, 1 by the replay (the other was stale)
    assert query(settings, "SELECT * FROM {schema}.fact_flats WHERE listing_id = :i", i=int(LONG_IDS[0])) == newer
    # ... but its version from this file joins the rent history.
    history = query(
        settings,
        "SELECT source_key, last_modified_at FROM {schema}.flat_snapshots "
        "WHERE listing_id = :i ORDER BY last_modified_at",
        i=int(LONG_IDS[0]),
    )
    assert [tuple(r) for r in history] == [(key, modified), (later_key, modified + timedelta(hours=1))]


def test_replay_works_when_personal_data_is_masked(settings, s3, monkeypatch):
    monkeypatch.setenv("ETL_MASK_PERSONAL_DATA", "1")
    monkeypatch.setenv("ETL_MASK_SALT", "3e8a0f6d27c94b15a0d3e7f1c86b259e")
    modified = datetime(2031, 3, 3, 9, 10, tzinfo=UTC)
    key, etag, _, _ = ingest_with_small_limit(settings, s3, monkeypatch, modified)
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.rejected_records WHERE raw_line IS NOT NULL") == 0
    # Without masking, the recovered listings' contacts would land in clear text: refused, nothing written.
    before = warehouse_state(settings)
    monkeypatch.delenv("ETL_MASK_PERSONAL_DATA")
    state, result = replay(settings, key)
    assert state.is_failed() and "loaded with personal-data masking" in str(result)
    assert warehouse_state(settings) == before
    monkeypatch.setenv("ETL_MASK_PERSONAL_DATA", "1")
    # From the command line this time (the environment carries the masking settings).
    done = cli(settings.raw_bucket, key)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"'etag': '{etag}'" in done.stdout and "'recovered': 3, 'still_rejected': 3" in done.stdout
    names = query(
        settings,
        """SELECT g.firstname, g.email FROM {schema}.fact_flats f
                               JOIN {schema}.dim_agency g ON g.agency_id = f.agency_id
                               WHERE f.listing_id IN (56906504, 45506939)""",
    )
    assert len(names) == 2
    assert all(v is None or v.startswith("h:") for row in names for v in row)  # masked like every other row
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.rejected_records") == 3
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.rejected_records WHERE raw_line IS NOT NULL") == 0


def list_mode(capsys, *args: str) -> list[str]:
    from flows.replay_rejects import main

    capsys.readouterr()
    assert main(list(args)) == 0
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith(("s3://", "1 ", "0 "))]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.replay_rejects", *args],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_only_a_loaded_version_is_replayed_and_refusals_change_nothing(settings, s3, monkeypatch):
    modified = datetime(2031, 3, 4, 9, 10, tzinfo=UTC)
    key, old_etag, _, _ = ingest_with_small_limit(settings, s3, monkeypatch, modified)
    # A correction under the same key supersedes the version and its rejects.
    folder = key.split("/")[-2]
    _, new_etag = upload(
        s3, settings, key.rsplit("/", 1)[1], zip_lines("c.json", [_line(read_sample_records()[0])]), folder=folder
    )
    assert ingest_file(settings.raw_bucket, key, new_etag)["status"] == "loaded"
    before = warehouse_state(settings)
    state, result = replay(settings, key, old_etag)
    assert state.is_failed() and "superseded" in str(result)
    unknown = f"{settings.raw_prefix}nowhere/{batch_name(modified)}.zip"
    state, result = replay(settings, unknown)
    assert state.is_failed() and "no loaded version" in str(result)
    # The loaded correction has no rejects: nothing to replay, the object is not even read.
    state, result = replay(settings, key)
    assert state.is_completed() and result["status"] == "nothing to replay" and result["etag"] == new_etag
    # A loaded version whose bytes were replaced under the key (the new one not ingested yet) is refused.
    ingest_with_small_limit(settings, s3, monkeypatch, modified + timedelta(hours=1))
    other_key = query(settings, "SELECT key FROM {schema}.load_ledger WHERE key <> :k", k=key)[0][0]
    before = warehouse_state(settings)
    s3.put_object(Bucket=settings.raw_bucket, Key=other_key, Body=zip_lines("n.json", [b"{}"]))
    state, result = replay(settings, other_key)
    assert state.is_failed() and "ingest the new version" in str(result)
    assert warehouse_state(settings) == before


def test_a_replay_waits_for_a_load_in_flight_and_redoes_its_work_if_the_rejects_moved(settings, s3, monkeypatch):
    """Serialised by the ledger lock; a replay prepared before another one committed is not applied twice."""
    import sqlalchemy as sa

    from berlin_rentals.replay import _Changed, apply_replay
    from berlin_rentals.replay_lines import stage_replay
    from berlin_rentals.s3 import download_source, head_source
    from berlin_rentals.warehouse.engines import target_for
    from berlin_rentals.warehouse.merge import execute_file, write_load_files
    from tasks.common import warehouse_engine

    modified = datetime(2031, 3, 5, 9, 10, tzinfo=UTC)
    key, etag, _, _ = ingest_with_small_limit(settings, s3, monkeypatch, modified)
    engine = warehouse_engine(settings.warehouse_url)
    target = target_for(settings.warehouse_url, settings.warehouse_schema)
    source = head_source(s3, settings.raw_bucket, key, etag, raw_bucket=settings.raw_bucket)
    archive = download_source(s3, source, Path(tempfile.mkdtemp()) / "batch.zip")
    with engine.connect() as conn:
        rejected = rejected_lines(conn, settings.warehouse_schema, source)
    prepared = transform_rejected(
        pick_lines(archive, key, [r.position for r in rejected], max_member_bytes=1 << 30, max_line_bytes=1 << 26),
        rejected,
        masker=None,
    )
    staged = stage_replay(
        s3, prepared, bucket=settings.staging_bucket, staging_prefix=settings.staging_prefix, etag=etag, masked=False
    )

    # A forced reload of the file is claiming it (uncommitted): the replay must wait for it.
    results = []
    with engine.connect() as holder:
        holder.begin()
        # The load's own claim (sql/load/claim_files.sql) of this version, as a forced reload makes it.
        write_load_files(
            holder,
            [{"load_order": 0, "bucket": settings.raw_bucket, "key": key, "etag": etag, "batch_hour": modified}],
        )
        execute_file(
            holder,
            "load/claim_files.sql",
            settings.warehouse_schema,
            {"flow_run_id": "reload", "started_at": datetime.now(UTC)},
        )
        thread = threading.Thread(
            target=contextvars.copy_context().run, args=(lambda: results.append(replay(settings, key)[1]),)
        )
        thread.start()
        time.sleep(3)
        assert thread.is_alive() and not results  # blocked on the ledger lock
        holder.rollback()
    thread.join(60)
    assert results[0]["status"] == "replayed" and results[0]["recovered"] == 3
    after = warehouse_state(settings)

    # The replay prepared before that one committed finds other rejects under the lock: it changes nothing.
    with pytest.raises(_Changed):
        apply_replay(engine, target, source, prepared, staged, data=prepared.batch.tables, flow_run_id="stale")
    assert warehouse_state(settings) == after
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT COUNT(*) FROM {settings.warehouse_schema}.fact_flats")).scalar() == 11
