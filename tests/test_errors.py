"""Which failures another attempt can fix: only those are retried."""

from __future__ import annotations

import botocore.exceptions
import pytest
import sqlalchemy.exc

from berlin_rentals.archive import BadArchive
from berlin_rentals.errors import ObjectChanged, ObjectGone, is_retryable
from berlin_rentals.source import InvalidSource


def client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


class DriverError(Exception):
    """Stands for the driver's exception: psycopg exposes the SQLSTATE as `sqlstate`."""

    def __init__(self, sqlstate: str):
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def db_error(cls, sqlstate: str):
    return cls("INSERT ...", {}, DriverError(sqlstate))


@pytest.mark.parametrize("exc", [
    client_error("SlowDown", 503), client_error("InternalError", 500), client_error("Whatever", 502),
    botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"),
    db_error(sqlalchemy.exc.OperationalError, "08006"),
    db_error(sqlalchemy.exc.DBAPIError, "40001"), db_error(sqlalchemy.exc.DBAPIError, "40P01"),
    db_error(sqlalchemy.exc.IntegrityError, "23505"),
], ids=["s3-slowdown", "s3-500", "s3-502", "s3-unreachable", "db-connection", "db-serialization",
        "db-deadlock", "db-concurrent-insert"])
def test_transient_failures_are_retried(exc):
    assert is_retryable(exc)


@pytest.mark.parametrize("exc", [
    BadArchive("f.zip: not a zip"), InvalidSource("bad key"), ObjectGone("gone"), ObjectChanged("changed"),
    client_error("AccessDenied", 403), db_error(sqlalchemy.exc.DataError, "22003"),
    db_error(sqlalchemy.exc.ProgrammingError, "42P01"), ValueError("a bug"),
], ids=["bad-archive", "bad-key", "gone", "changed", "access-denied", "db-data", "db-missing-table", "bug"])
def test_data_errors_and_bugs_are_not(exc):
    assert not is_retryable(exc)
