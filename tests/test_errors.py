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


@pytest.mark.parametrize(
    "exc",
    [
        client_error("SlowDown", 503),
        client_error("InternalError", 500),
        client_error("Whatever", 502),
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"),
        db_error(sqlalchemy.exc.OperationalError, "08006"),
        db_error(sqlalchemy.exc.DBAPIError, "40001"),
        db_error(sqlalchemy.exc.DBAPIError, "40P01"),
        db_error(sqlalchemy.exc.IntegrityError, "23505"),
    ],
    ids=[
        "s3-slowdown",
        "s3-500",
        "s3-502",
        "s3-unreachable",
        "db-connection",
        "db-serialization",
        "db-deadlock",
        "db-concurrent-insert",
    ],
)
def test_transient_failures_are_retried(exc):
    assert is_retryable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        BadArchive("f.zip: not a zip"),
        InvalidSource("bad key"),
        ObjectGone("gone"),
        ObjectChanged("changed"),
        client_error("AccessDenied", 403),
        db_error(sqlalchemy.exc.DataError, "22003"),
        db_error(sqlalchemy.exc.ProgrammingError, "42P01"),
        ValueError("a bug"),
    ],
    ids=["bad-archive", "bad-key", "gone", "changed", "access-denied", "db-data", "db-missing-table", "bug"],
)
def test_data_errors_and_bugs_are_not(exc):
    assert not is_retryable(exc)


def test_retry_delays_keep_the_production_default_and_can_be_shortened():
    from berlin_rentals.config import ConfigError, retry_delays

    assert retry_delays({}) == [2.0, 8.0, 30.0]
    assert retry_delays({"ETL_RETRY_DELAYS": "0, 0.5"}) == [0.0, 0.5]
    for bad in ("soon", "1,-1"):
        with pytest.raises(ConfigError, match="ETL_RETRY_DELAYS"):
            retry_delays({"ETL_RETRY_DELAYS": bad})


def test_s3_calls_make_4_attempts_unless_aws_max_attempts_says_otherwise(monkeypatch):
    from berlin_rentals.s3 import _boto_config

    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    assert _boto_config().retries == {"mode": "standard", "total_max_attempts": 4}
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert _boto_config().retries["total_max_attempts"] == 1
