"""A DB-API module that records every statement and answers with plausible rows, so the Redshift
path can run end to end here and show exactly what it would send to a cluster."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

apilevel, threadsafety, paramstyle = "2.0", 1, "format"
__version__ = "2.1.0"
STATEMENTS: list[tuple[str, object]] = []


class Error(Exception):
    pass


class Warning(Exception):  # noqa: A001 - DB-API name
    pass


InterfaceError = DatabaseError = DataError = OperationalError = IntegrityError = Error
InternalError = ProgrammingError = NotSupportedError = Error

COUNT_COLUMNS = [
    "load_order",
    "etag",
    "fact_staged",
    "fact_inserted",
    "fact_updated",
    "dim_city_inserted",
    "dim_address_inserted",
    "dim_agency_inserted",
    "dim_agency_updated",
]
# The MERGEs one load sends, in the order it must send them: each dimension before what refers to it
# (city, district, address), the agencies before their agents, the fact last.
MERGE_ORDER = [
    "berlin_rentals.dim_city",
    "berlin_rentals.dim_district",
    "berlin_rentals.dim_address",
    "berlin_rentals.dim_agency",
    "berlin_rentals.dim_agent",
    "berlin_rentals.fact_flats",
]
LEDGER_COLUMNS = ["key", "etag", "status", "attempts", "error", "last_modified", "version_id"]

_ANSWERS = [
    (re.compile(r"version\(\)", re.I), [("PostgreSQL 8.0.2 on i686-pc-linux-gnu, Redshift 1.0.77467",)], ["version"]),
    (re.compile(r"show standard_conforming_strings", re.I), [("on",)], ["standard_conforming_strings"]),
    (re.compile(r"current_schema", re.I), [("public",)], ["current_schema"]),
    (re.compile(r"show transaction isolation level", re.I), [("serializable",)], ["transaction_isolation"]),
    (re.compile(r"AS staged", re.I), [(11, 11, 0)], ["staged", "inserted", "updated"]),
    (re.compile(r"AS city_inserted", re.I), [(1, 11, 10)], ["city_inserted", "address_inserted", "agency_inserted"]),
    (re.compile(r"SELECT status, attempts, error", re.I), [], ["status", "attempts", "error"]),
    # The ledger of a load's keys: no version of them loaded yet.
    (re.compile(r"SELECT key, etag, status, attempts, error, last_modified", re.I), [], LEDGER_COLUMNS),
    # A load of one file's figures (batch_answers: of many).
    (re.compile(r"FROM stage_batch_counts\s+ORDER BY", re.I), [(0, "", 11, 11, 0, 1, 11, 10, 0)], COUNT_COLUMNS),
]


class Cursor:
    def __init__(self):
        self.description, self.rowcount, self._rows = None, -1, []

    def execute(self, sql, params=None):
        STATEMENTS.append((sql, params))
        for pattern, rows, columns in _ANSWERS:
            if pattern.search(sql):
                self._rows = list(rows)
                self.description = [(c, None, None, None, None, None, None) for c in columns]
                self.rowcount = len(rows)
                return
        self._rows, self.description, self.rowcount = [], None, 0

    def executemany(self, sql, seq):
        for params in seq:
            self.execute(sql, params)

    def fetchone(self):
        return self._rows.pop(0) if self._rows else None

    def fetchall(self):
        rows, self._rows = self._rows, []
        return rows

    def fetchmany(self, size=None):
        return self.fetchall()

    def close(self):
        pass


class Connection:
    autocommit = False

    def __init__(self):
        self.py_types = {str: "varchar"}  # redshift_connector's type map, which the dialect extends

    def cursor(self):
        return Cursor()

    def commit(self):
        STATEMENTS.append(("COMMIT", None))

    def rollback(self):
        STATEMENTS.append(("ROLLBACK", None))

    def close(self):
        pass


def connect(*args, **kwargs):
    return Connection()


def literal(value) -> str:
    """A bound value as the SQL literal a cluster would see, so a recorded statement can be parsed."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    if isinstance(value, (datetime, date)):
        return f"'{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def rendered(sql: str, params) -> str:
    """A recorded statement with its (format-style) parameters filled in as literals."""
    if not params or not isinstance(params, (tuple, list)):
        return sql
    return sql.replace("%%", "%") % tuple(literal(p) for p in params)


def batch_answers(etags: list[str], ledger: list[tuple] | None = None) -> list:
    """What a cluster would answer a load of files with these ETags (in load order): the ledger read with
    `ledger`'s rows (key, etag, status, last_modified, version_id), and the per-file counts with a row for
    each file the ledger leaves in the load (11 listings: 11 new, one city, 11 addresses, 10 agencies)."""
    rows = [(key, etag, status, 0, None, modified, version) for key, etag, status, modified, version in ledger or []]
    left = {row[1] for row in rows if row[2] in ("loaded", "parked")}
    kept = [etag for etag in etags if etag not in left]
    counts = [(i, etag, 11, 11, 0, 1, 11, 10, 0) for i, etag in enumerate(kept)]
    return [
        (re.compile(r"SELECT key, etag, status, attempts, error, last_modified", re.I), rows, LEDGER_COLUMNS),
        (re.compile(r"FROM stage_batch_counts\s+ORDER BY", re.I), counts, COUNT_COLUMNS),
    ]


def staged_files(batch, count: int, first_hour: int = 0) -> list:
    """`count` staged hourly files of one transformed batch, as a batch load takes them (BatchFile): distinct
    keys and ETags, the batch's row counts, sizes as stage_batch records them."""
    from datetime import UTC, datetime, timedelta

    from berlin_rentals.source import SourceObject
    from berlin_rentals.staging import StagedBatch, staged_prefix
    from berlin_rentals.warehouse.load import BatchFile

    hour0 = datetime(2019, 1, 13, tzinfo=UTC)
    files = []
    for i in range(first_hour, first_hour + count):
        etag, hour = f"{i:032x}", hour0 + timedelta(hours=i)
        key = f"raw/immobilienscout24_berlin_{hour:%Y%m%d_%H}.zip"
        source = SourceObject("rentals-raw", key, etag, 29979, hour + timedelta(minutes=1))
        staged = StagedBatch(
            "rentals-staging",
            staged_prefix("clean/", etag),
            {n: batch.rows(n) for n in batch.tables},
            sizes={n: 1000 + len(n) for n in batch.tables},
        )
        files.append(BatchFile(source, staged, batch.stats, attempt=f"attempt-{i}"))
    return files
