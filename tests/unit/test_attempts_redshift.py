"""The attempt and release statements as the Redshift path sends them: recorded by the driver of
tests/unit/test_redshift_statements.py, parsed as Redshift SQL (sqlglot), each write under the ledger's LOCK."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
import sqlglot
from sqlglot import exp

import tests.recording_dbapi as driver
from berlin_rentals.source import Version
from berlin_rentals.warehouse.attempts import (
    AttemptPolicy,
    Failure,
    begin_attempt,
    parked_files,
    record_failure,
    release_file,
)
from berlin_rentals.warehouse.engines import RedshiftTarget

KEY, ETAG = "raw/immobilienscout24_berlin_20190113_15.zip", "793fb4ae6d07bb5b55ea181ad1fed13a"
VERSION = Version("rentals-raw", KEY, ETAG)


@pytest.fixture
def redshift(monkeypatch):
    counted = {"attempts": 0}
    answers = [
        (re.compile(r"AS this_run", re.I), None, ["attempts", "this_run", "unfinished"]),
        (re.compile(r"AS parked_at", re.I), [], ["bucket", "key", "etag", "attempts", "parked_at", "error"]),
    ]

    class Cursor(driver.Cursor):
        def execute(self, sql, params=None):
            if answers[0][0].search(sql):
                driver.STATEMENTS.append((sql, params))
                self._rows, self.rowcount = [(counted["attempts"], 0, counted["attempts"])], 1
                self.description = [(c, None, None, None, None, None, None) for c in answers[0][2]]
                return
            super().execute(sql, params)
            if answers[1][0].search(sql):
                self.description = [(c, None, None, None, None, None, None) for c in answers[1][2]]

    class Connection(driver.Connection):
        def cursor(self):
            return Cursor()

    monkeypatch.setattr(driver, "connect", lambda *a, **k: Connection())
    engine = sa.create_engine("redshift+redshift_connector://loader@cluster:5439/rentals", module=driver)
    with engine.connect():
        pass
    driver.STATEMENTS.clear()
    return engine, RedshiftTarget("berlin_rentals", "arn:aws:iam::123456789012:role/copy"), counted


def _sent() -> list[str]:
    sent = [driver.rendered(sql, params) for sql, params in driver.STATEMENTS]
    driver.STATEMENTS.clear()
    return sent


def _parse_all(sent: list[str]) -> list[str]:
    kinds = []
    for sql in sent:
        if sql in ("COMMIT", "ROLLBACK"):
            kinds.append(sql)
            continue
        tree = sqlglot.parse_one(sql, read="redshift", error_level=sqlglot.ErrorLevel.RAISE)
        if isinstance(tree, exp.Command):
            assert tree.this.upper() == "LOCK", sql
        kinds.append(" ".join(sql.split()[:2]).upper())
    return kinds


def test_attempts_failures_and_releases_parse_as_redshift_sql_under_the_ledger_lock(redshift):
    engine, target, counted = redshift
    assert begin_attempt(engine, target, VERSION, "run-1", AttemptPolicy(3)) is None
    kinds = _parse_all(_sent())
    assert (
        kinds[0] == "LOCK BERLIN_RENTALS.LOAD_LEDGER"
        and "INSERT INTO" in kinds
        and kinds[-2:] == ["COMMIT", "ROLLBACK"]
    )

    counted["attempts"] = 3  # three attempts that never finished: parked before a fourth
    status, attempts, error = begin_attempt(engine, target, VERSION, "run-4", AttemptPolicy(3))
    assert (status, attempts) == ("parked", 3) and "3 of them ended without a word" in error
    sent = _sent()
    assert not any("load_attempts (bucket" in sql for sql in sent)  # the fourth is not started
    assert any("INSERT INTO berlin_rentals.load_ledger" in sql and "'parked'" in sql for sql in sent)
    _parse_all(sent)

    counted["attempts"] = 1
    assert record_failure(engine, target, VERSION, Failure("x"), run_id="run-5", policy=AttemptPolicy(3)) == (
        "failed",
        1,
    )
    counted["attempts"] = 0
    assert record_failure(
        engine, target, VERSION, Failure("x", counted=False), run_id="run-6", policy=AttemptPolicy(3)
    ) == (None, 0)
    assert release_file(engine, target, "rentals-raw", KEY, ETAG) is False  # the recording driver matches no row
    parked_files(engine, "berlin_rentals", "rentals-raw", datetime(2026, 12, 1, tzinfo=UTC), "%AccessDenied%")
    kinds = _parse_all(_sent())
    assert kinds.count("LOCK BERLIN_RENTALS.LOAD_LEDGER") == 3  # each write transaction under the lock
    assert "UPDATE BERLIN_RENTALS.LOAD_ATTEMPTS" in kinds and "UPDATE BERLIN_RENTALS.LOAD_LEDGER" in kinds
