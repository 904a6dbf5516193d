"""Which failures another attempt can fix: only those are retried."""

from __future__ import annotations

import botocore.exceptions
import pytest
import sqlalchemy.exc

from berlin_rentals.archive import BadArchive
from berlin_rentals.errors import ObjectChanged, ObjectGone, is_retryable
from berlin_rentals.source import InvalidSource
from berlin_rentals.staging import StagedObjectMissing


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
        StagedObjectMissing("s3://staging/clean/x/etag=e/fact_flats/part-00000.parquet is gone"),
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
        "staged-object-gone",
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


def test_s3_calls_make_4_attempts_unless_aws_max_attempts_says_otherwise():
    from berlin_rentals.config import AwsSettings
    from berlin_rentals.s3 import s3_client

    def retries(env: dict[str, str]) -> dict:
        return s3_client(AwsSettings.from_env(env)).meta.config.retries

    assert retries({}) == {"mode": "standard", "total_max_attempts": 4}
    assert retries({"AWS_MAX_ATTEMPTS": "1"})["total_max_attempts"] == 1


# --- Redshift, as redshift_connector reports it ------------------------------------------------------
#
# redshift_connector builds every server error from the wire's ErrorResponse fields (S severity, C
# SQLSTATE, M message, D detail) as ProgrammingError(dict) (InterfaceError for 28000, IntegrityError for
# 23505), with no `sqlstate` or `pgcode`; a lost socket is InterfaceError("communication error", OSError)
# or InterfaceError("BrokenPipe: ..."). The errors below are built by the driver's own code from the
# bytes a cluster sends, then wrapped by SQLAlchemy exactly as a failed execute wraps them.


def redshift_server_error(**fields: str):
    """The driver's exception for an ErrorResponse with these fields, wrapped as SQLAlchemy wraps it."""
    import types

    import redshift_connector
    import redshift_connector.core

    wire = b"".join(k.encode() + v.encode() + b"\x00" for k, v in ({"S": "ERROR"} | fields).items()) + b"\x00"
    received = types.SimpleNamespace(error=None)
    redshift_connector.core.Connection.handle_ERROR_RESPONSE(received, wire, None)
    return sqlalchemy.exc.DBAPIError.instance("COPY ...", {}, received.error, redshift_connector.Error)


def redshift_interface_error(*args):
    import redshift_connector

    return sqlalchemy.exc.DBAPIError.instance(
        "MERGE ...", {}, redshift_connector.InterfaceError(*args), redshift_connector.Error
    )


SERIALIZABLE = (
    "Serializable isolation violation on table - 15005, transactions forming the cycle are: 4195, 4236 (pid:1234)"
)
RESIZE = "System is in resize mode and only allows read-only queries. Please try again later."


@pytest.mark.parametrize(
    "exc",
    [
        redshift_server_error(C="XX000", M="1023", D=SERIALIZABLE),
        redshift_server_error(C="XX000", M="could not complete because of conflict with concurrent transaction"),
        redshift_server_error(C="XX000", M="Cannot execute query because system is in resize mode", D=RESIZE),
        redshift_server_error(C="57P01", M="terminating connection due to administrator command"),
        redshift_server_error(C="40001", M="could not serialize access due to concurrent update"),
        redshift_server_error(C="53200", M="out of memory"),
        redshift_server_error(C="23505", M="duplicate key value violates unique constraint"),
        redshift_interface_error("communication error", ConnectionResetError(104, "Connection reset by peer")),
        redshift_interface_error(
            "BrokenPipe: server socket closed. Please check that client side networking configurations such as "
            "Proxies, firewalls, VPN, etc. are not affecting your network connection."
        ),
        redshift_interface_error("connection is closed"),
    ],
    ids=[
        "serializable-isolation-1023",
        "concurrent-transaction-conflict",
        "cluster-resize",
        "admin-terminated",
        "sqlstate-40001",
        "out-of-memory-53200",
        "concurrent-insert-23505",
        "connection-reset",
        "broken-pipe",
        "connection-closed",
    ],
)
def test_redshift_connector_transient_errors_are_retried(exc):
    assert is_retryable(exc), exc


@pytest.mark.parametrize(
    "exc",
    [
        redshift_server_error(C="22001", M="value too long for type character varying(64)"),
        redshift_server_error(C="42601", M='syntax error at or near "MERGE"'),
        redshift_server_error(C="XX000", M="Spectrum Scan Error", D="Invalid Parquet file"),
        redshift_interface_error("Only %s and %% are supported in the query."),
    ],
    ids=["value-too-long", "syntax-error", "other-internal-error", "driver-misuse"],
)
def test_redshift_connector_data_errors_and_bugs_are_not_retried(exc):
    assert not is_retryable(exc), exc


# psycopg2 (the other Redshift driver, `redshift+psycopg2://`) is not installed here: its exceptions
# cannot be built for real. Their form is documented: `pgcode` holds the SQLSTATE and `pgerror` the
# server's text ("ERROR:  1023\nDETAIL:  Serializable isolation violation ..."). This stands in for it.
class Psycopg2Error(Exception):
    def __init__(self, pgcode: str, pgerror: str):
        super().__init__(pgerror)
        self.pgcode, self.pgerror = pgcode, pgerror


def test_psycopg2_forms_of_redshift_errors_are_classified_by_code_and_message():
    serializable = Psycopg2Error("XX000", f"ERROR:  1023\nDETAIL:  {SERIALIZABLE}\n")
    resize = Psycopg2Error(
        "XX000", f"ERROR:  Cannot execute query because system is in resize mode\nDETAIL:  {RESIZE}\n"
    )
    too_long = Psycopg2Error("22001", "ERROR:  value too long for type character varying(64)\n")
    assert is_retryable(sqlalchemy.exc.InternalError("COPY ...", {}, serializable))
    assert is_retryable(sqlalchemy.exc.InternalError("COPY ...", {}, resize))
    assert not is_retryable(sqlalchemy.exc.DataError("COPY ...", {}, too_long))


def test_a_lost_redshift_connection_is_invalidated_so_the_retry_gets_a_new_one(monkeypatch):
    """Through a real engine: the redshift_connector dialect does not know the driver's disconnect errors,
    so without our hook SQLAlchemy kept the dead connection in the pool and every retry failed on it."""
    import types

    import redshift_connector
    import sqlalchemy as sa

    import tests.recording_dbapi as recording

    opened = []

    class Cursor(recording.Cursor):
        def execute(self, sql, params=None):
            if "load_ledger" in sql and len(opened) == 1:
                raise redshift_connector.InterfaceError("communication error", BrokenPipeError(32, "Broken pipe"))
            return super().execute(sql, params)

    class Connection(recording.Connection):
        def cursor(self):
            return Cursor()

    def connect(*args, **kwargs):
        opened.append(Connection())
        return opened[-1]

    driver = types.ModuleType("flaky_redshift")
    driver.__dict__.update({k: v for k, v in vars(recording).items() if not k.startswith("__")})
    driver.__dict__.update(
        {
            name: getattr(redshift_connector, name)
            for name in (
                "Error",
                "InterfaceError",
                "DatabaseError",
                "OperationalError",
                "ProgrammingError",
                "IntegrityError",
                "DataError",
                "InternalError",
                "NotSupportedError",
            )
        }
    )
    driver.connect, driver.__version__ = connect, recording.__version__
    from sqlalchemy_redshift.dialect import RedshiftDialect_redshift_connector

    from berlin_rentals.warehouse.ddl import make_engine

    monkeypatch.setattr(RedshiftDialect_redshift_connector, "import_dbapi", classmethod(lambda cls: driver))
    engine = make_engine("redshift+redshift_connector://loader@cluster:5439/rentals")  # as the tasks make it
    with pytest.raises(sqlalchemy.exc.InterfaceError) as lost:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT status FROM berlin_rentals.load_ledger"))
    assert lost.value.connection_invalidated and is_retryable(lost.value)
    with engine.connect() as conn:  # the retry: a new connection, not the dead one
        conn.execute(sa.text("SELECT status FROM berlin_rentals.load_ledger"))
    assert len(opened) == 2


# --- configuration errors: not the file's fault ------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        client_error("AccessDenied", 403),
        client_error("403", 403),  # a HEAD's 403 has no body, only the status
        client_error("InvalidAccessKeyId", 403),
        client_error("NoSuchBucket", 404),  # e.g. ETL_STAGING_BUCKET names a bucket that does not exist
        botocore.exceptions.NoCredentialsError(),
        redshift_server_error(
            C="XX000",
            M="User arn:aws:redshift:eu-central-1:1:dbuser:c/loader is not authorized to assume IAM Role arn:aws:iam::1:role/copy",
        ),
        redshift_server_error(C="XX000", M="S3ServiceException:Access Denied,Status 403,Error AccessDenied"),
        redshift_server_error(C="42501", M="permission denied for schema berlin_rentals"),
        redshift_server_error(C="28000", M='password authentication failed for user "loader"'),
        db_error(sqlalchemy.exc.ProgrammingError, "42P01"),
    ],
    ids=[
        "s3-access-denied",
        "s3-head-403",
        "s3-bad-key",
        "s3-no-such-bucket",
        "no-credentials",
        "redshift-cannot-assume-role",
        "redshift-copy-access-denied",
        "redshift-permission-denied",
        "redshift-bad-password",
        "warehouse-table-missing",
    ],
)
def test_configuration_and_permission_errors_are_config_errors_never_retried(exc):
    from berlin_rentals.errors import is_config_error

    assert is_config_error(exc) and not is_retryable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        client_error("SlowDown", 503),
        BadArchive("f.zip: not a zip"),
        db_error(sqlalchemy.exc.DataError, "22003"),
        redshift_server_error(C="XX000", M="1023", D=SERIALIZABLE),
    ],
    ids=["s3-slowdown", "bad-archive", "db-data", "serializable"],
)
def test_the_files_own_failures_are_not_config_errors(exc):
    from berlin_rentals.errors import is_config_error

    assert not is_config_error(exc)
