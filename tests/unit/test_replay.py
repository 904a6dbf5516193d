"""Replaying rejected lines after a transform fix: pure line picking and the statements sent (the flow on the real
stack: tests/stack/test_replay.py; the deployment on the worker: tests/e2e/test_replay.py).

The "fix" is simulated honestly, without mocking the project's code: a file is ingested with a small
ETL_MAX_LINE_BYTES, so its long lines are rejected `line_too_long`; the replay then runs with the
normal limit, under which those lines pass. Two other lines are bad for good and stay rejected.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import UTC, datetime

import pytest

from berlin_rentals.archive import SourceLine, iter_lines
from berlin_rentals.model import STAGED_TABLES
from berlin_rentals.replay import ReplayRefused, replayable_etag
from berlin_rentals.replay_lines import (
    LinesNotFound,
    RecordedReject,
    pick_lines,
    reason_code,
    replay_digest,
    select_lines,
    transform_rejected,
)
from berlin_rentals.synthetic import read_sample_records

# ---- pure: picking lines ------------------------------------------------------------------------


def two_member_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.json", b'{"l": 1}\n\n{"l": 3}\r\n{"l": 4}\n')
        archive.writestr("__MACOSX/._a.json", b"junk")
        archive.writestr("b.jsonl", b'{"b": 1}\n{"b": 2}')  # no final line break
    return buffer.getvalue()


def test_select_lines_keeps_archive_order_and_stops_once_all_are_found():
    consumed = []

    def lines():
        for n in range(1, 100):
            consumed.append(n)
            yield SourceLine("m.json", n, b"x")

    picked = list(select_lines(lines(), {("m.json", 7), ("m.json", 3)}))
    assert [line.line_number for line in picked] == [3, 7]
    assert consumed[-1] == 7  # nothing read past the last wanted line
    assert list(select_lines(lines(), [])) == []


def test_pick_lines_numbers_lines_as_the_ingest_did():
    body = two_member_zip()
    ingest = {(line.member, line.line_number): line for line in iter_lines(body, "t.zip")}
    picked = pick_lines(
        body, "t.zip", [("b.jsonl", 2), ("a.json", 3), ("a.json", 1)], max_member_bytes=1 << 20, max_line_bytes=1 << 20
    )
    assert [(line.member, line.line_number, line.raw) for line in picked] == [
        ("a.json", 1, b'{"l": 1}'),
        ("a.json", 3, b'{"l": 3}'),
        ("b.jsonl", 2, b'{"b": 2}'),
    ]
    assert all(ingest[(line.member, line.line_number)] == line for line in picked)


def test_pick_lines_takes_a_line_once_when_the_zip_holds_a_member_name_twice():
    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore")  # "Duplicate name": zipfile warns but writes it
        archive.writestr("a.json", b'{"first": 1}\n')
        archive.writestr("a.json", b'{"second": 1}\n')
    (line,) = pick_lines(buffer.getvalue(), "t.zip", [("a.json", 1)], max_member_bytes=1 << 20, max_line_bytes=1 << 20)
    assert line.raw == b'{"first": 1}'


def test_pick_lines_applies_the_current_line_limit():
    (line,) = pick_lines(two_member_zip(), "t.zip", [("a.json", 4)], max_member_bytes=1 << 20, max_line_bytes=4)
    assert line.too_long and line.raw == b'{"l"'


def test_a_position_the_object_does_not_have_is_refused():
    with pytest.raises(LinesNotFound, match="a.json line 2"):  # line 2 is blank: never a rejected line
        pick_lines(
            two_member_zip(), "t.zip", [("a.json", 2), ("a.json", 1)], max_member_bytes=1 << 20, max_line_bytes=1 << 20
        )
    with pytest.raises(LinesNotFound, match="gone.json line 1"):
        pick_lines(two_member_zip(), "t.zip", [("gone.json", 1)], max_member_bytes=1 << 20, max_line_bytes=1 << 20)


def test_transform_of_rejected_lines_tells_recovered_from_still_rejected():
    record = json.dumps(read_sample_records()[0]).encode()
    lines = [SourceLine("m.json", 1, record), SourceLine("m.json", 2, b"{nope")]
    before = [
        RecordedReject("m.json", 1, "m.json line 1: line_too_long: the line is longer than the limit"),
        RecordedReject("m.json", 2, "m.json line 2: not_json: ..."),
    ]
    replay = transform_rejected(lines, before, masker=None)
    assert replay.recovered == [("m.json", 1)]
    assert list(replay.still_rejected) == [("m.json", 2)] and not replay.changes_nothing
    assert reason_code(replay.still_rejected[("m.json", 2)]) == "not_json"
    again = transform_rejected(lines[1:], [RecordedReject("m.json", 2, replay.still_rejected[("m.json", 2)])], None)
    assert again.changes_nothing


def test_only_a_loaded_version_is_replayable():
    versions = {"a" * 32: ("superseded", 3), "b" * 32: ("loaded", 1), "c" * 32: ("parked", None)}
    assert replayable_etag(versions, "bkt", "raw/x.zip", None) == "b" * 32
    assert replayable_etag(versions, "bkt", "raw/x.zip", "b" * 32) == "b" * 32
    with pytest.raises(ReplayRefused, match="superseded.*replay that version instead"):
        replayable_etag(versions, "bkt", "raw/x.zip", "a" * 32)
    with pytest.raises(ReplayRefused, match="parked.*force=true"):
        replayable_etag(versions, "bkt", "raw/x.zip", "c" * 32)
    with pytest.raises(ReplayRefused, match="never loaded"):
        replayable_etag(versions, "bkt", "raw/x.zip", "d" * 32)
    with pytest.raises(ReplayRefused, match="no loaded version"):
        replayable_etag({}, "bkt", "raw/x.zip", None)


def test_replay_digest_names_the_same_lines_the_same_way():
    a = replay_digest("e" * 32, [("m", 2), ("m", 1)], masked=False)
    assert a == replay_digest("e" * 32, [("m", 1), ("m", 2)], masked=False)
    assert a != replay_digest("e" * 32, [("m", 1)], masked=False) != replay_digest("e" * 32, [("m", 1)], masked=True)


# ---- on the stack -------------------------------------------------------------------------------


def _line(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode()


# ---- the Redshift path: every statement a replay sends, parsed as Redshift SQL --------------------

ROLE = "arn:aws:iam::123456789012:role/rentals-redshift-copy"


def test_every_replay_statement_parses_as_redshift_sql_in_one_transaction(monkeypatch):
    import sqlalchemy as sa
    import sqlglot
    from sqlglot import exp

    import tests.recording_dbapi as driver
    from berlin_rentals.replay import apply_replay
    from berlin_rentals.source import SourceObject
    from berlin_rentals.staging import StagedBatch
    from berlin_rentals.warehouse.engines import RedshiftTarget

    etag = "793fb4ae6d07bb5b55ea181ad1fed13a"
    records = read_sample_records()
    lines = [SourceLine("m.json", n, _line(r)) for n, r in enumerate(records[:3], start=1)]
    lines.append(SourceLine("m.json", 4, b"{nope"))
    before = [RecordedReject("m.json", n, f"m.json line {n}: line_too_long: ...") for n in range(1, 5)]
    prepared = transform_rejected(lines, before, masker=None)
    staged = StagedBatch(
        "rentals-staging",
        f"clean/v1/replay/etag={etag}/{replay_digest(etag, [], False)}/",
        {n: prepared.batch.rows(n) for n in prepared.batch.tables},
    )
    source = SourceObject(
        "rentals-raw",
        "raw/immobilienscout24_berlin_20190113_15.zip",
        etag,
        29979,
        datetime(2019, 1, 13, 15, 1, tzinfo=UTC),
    )
    answers = [
        (
            re.compile(r"SELECT status, rejected_count, rejected_by_reason\s+FROM", re.I),
            [("loaded", 2, "not_json=2")],
            ["status", "rejected_count", "rejected_by_reason"],
        ),
        (
            re.compile(r"SELECT member, line_number, reason", re.I),
            [(r.member, r.line_number, r.reason, 0) for r in before],
            ["member", "line_number", "reason", "raw_withheld"],
        ),
        (re.compile(r"AS rejected\b", re.I), [(1,)], ["rejected"]),
    ]
    monkeypatch.setattr(driver, "_ANSWERS", answers + driver._ANSWERS)
    engine = sa.create_engine("redshift+redshift_connector://loader@cluster:5439/rentals", module=driver)
    with engine.connect():
        pass
    driver.STATEMENTS.clear()
    outcome = apply_replay(engine, RedshiftTarget("berlin_rentals", ROLE), source, prepared, staged, flow_run_id="r1")
    assert outcome.status == "replayed" and outcome.recovered == 3
    sent = list(driver.STATEMENTS)
    heads = [" ".join(sql.split()[:3]).upper() for sql, _ in sent]
    assert heads[0] == "LOCK BERLIN_RENTALS.LOAD_LEDGER"
    commit = heads.index("COMMIT")
    assert set(heads[commit + 1 :]) <= {"ROLLBACK"} and "ROLLBACK" not in heads[:commit]
    for sql, params in sent[:commit]:
        tree = sqlglot.parse_one(driver.rendered(sql, params), read="redshift", error_level=sqlglot.ErrorLevel.RAISE)
        if isinstance(tree, exp.Command):
            assert tree.this.upper() == "LOCK", sql
        assert not isinstance(tree, exp.Merge) or "WHEN MATCHED AND" not in sql.upper()  # no conditional clauses
    merges = [sql.split()[2] for sql, _ in sent if sql.lstrip().upper().startswith("MERGE")]
    assert merges == driver.MERGE_ORDER
    copies = [sql for sql, _ in sent if sql.lstrip().upper().startswith("COPY")]
    assert len(copies) == len(STAGED_TABLES) and all(f"/replay/etag={etag}/" in sql and ROLE in sql for sql in copies)
    # The file's other snapshots and rejects are never deleted wholesale: every DELETE is bound to the stage.
    deletes = [" ".join(sql.split()) for sql, _ in sent if sql.lstrip().upper().startswith("DELETE")]
    snapshot_deletes = [d for d in deletes if d.startswith("DELETE FROM berlin_rentals.flat_snapshots")]
    assert snapshot_deletes and all("USING stage_flat_snapshots" in d for d in snapshot_deletes)
    reject_deletes = [d for d in deletes if d.startswith("DELETE FROM berlin_rentals.rejected_records")]
    assert len(reject_deletes) == 1 and "NOT EXISTS ( SELECT 1 FROM stage_rejected_records AS s" in reject_deletes[0]


def test_the_snapshot_insert_covers_every_column_of_flat_snapshots():
    from berlin_rentals.replay import _snapshot_statements
    from berlin_rentals.warehouse.tables import warehouse_metadata

    insert = " ".join(_snapshot_statements("s")[-1].text.split())
    columns = insert[insert.index("(") + 1 : insert.index(")")].replace(" ", "").split(",")
    assert sorted(columns) == sorted(c.name for c in warehouse_metadata("s").tables["s.flat_snapshots"].columns)
