"""Tell retryable failures from terminal ones, as dlt does: retrying a data error only delays parking it."""

from __future__ import annotations

import re

import botocore.exceptions
import sqlalchemy as sa
import sqlalchemy.exc

from berlin_rentals.archive import BadArchive
from berlin_rentals.config import ConfigError
from berlin_rentals.source import InvalidSource
from berlin_rentals.staging import StagedObjectMissing


class ObjectGone(LookupError):
    """The object (or this version of it) is no longer in the raw bucket. Terminal for this version."""


class ObjectChanged(LookupError):
    """The object under the key now has another ETag than the one we were asked to load. Terminal."""


class AttemptsExhausted(RuntimeError):
    """Every attempt this version was allowed ended without recording why: each process died on it."""


class RejectRatioExceeded(ValueError):
    """More of the file's lines were rejected than ETL_MAX_REJECT_RATIO allows: parked, not loaded. Terminal:
    the same version yields the same rejects until the transform or the setting changes."""


TERMINAL = (
    BadArchive,
    InvalidSource,
    ConfigError,
    ObjectGone,
    ObjectChanged,
    AttemptsExhausted,
    RejectRatioExceeded,
)

# A setting, a permission or a credential, not the file: another attempt fails the same way until a
# person fixes it, so it is not counted against the file and never parks it.
_CONFIG_S3_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "AccountProblem",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidToken",
    "NoSuchBucket",
    "SignatureDoesNotMatch",
    "TokenRefreshRequired",
    "403",
    "Forbidden",
}
# 28: authentication; 42501: insufficient privilege; 3D000/3F000: no such database or schema; 42P01: a
# table of the warehouse is missing (create_warehouse has not run against it).
_CONFIG_SQLSTATE_PREFIXES = ("28", "42501", "3D000", "3F000", "42P01")
_CONFIG_MESSAGES = re.compile(
    r"not authorized to assume IAM Role|S3ServiceException:\s*Access Denied|password authentication failed|"
    r"no pg_hba\.conf entry|permission denied|role \"[^\"]*\" does not exist",
    re.IGNORECASE,
)

# SQLSTATE classes and codes worth another attempt: lost connections, resource limits, and the
# conflicts two concurrent loads can hit (serialization, deadlock, a row the other one inserted).
_RETRYABLE_SQLSTATE_PREFIXES = ("08", "53", "57P", "40001", "40P01", "23505", "55P03")
_RETRYABLE_S3_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "Throttling",
    "ThrottlingException",
    "503",
    "500",
    "502",
    "504",
}


# Redshift reports most of its own conflicts as SQLSTATE XX000 (internal error) and tells them apart only
# in the text: error 1023 is a serializable isolation violation, and a cluster being resized or restarted
# refuses work for a while. Matched on message and detail as the server sends them.
_REDSHIFT_TRANSIENT = re.compile(
    r"^1023$|serializable isolation violation|conflict with concurrent transaction|resize mode|"
    r"being resized|is (?:in )?(?:maintenance|paus\w*)|system is starting up|cluster is (?:not )?available",
    re.IGNORECASE | re.MULTILINE,
)
# redshift_connector's InterfaceError for a connection that is gone (its other InterfaceErrors are misuse).
_CONNECTION_LOST = re.compile(
    r"communication error|BrokenPipe|server socket closed|connection is closed|network error|connection time out",
    re.IGNORECASE,
)


def driver_error(exc: BaseException) -> tuple[str | None, str]:
    """(SQLSTATE, the server's message and detail) of a wrapped DB-API error, in each driver's form.

    psycopg (3) has `sqlstate`; psycopg2 `pgcode` and `pgerror` ("ERROR:  1023\nDETAIL:  ..."); redshift_connector
    neither: its ProgrammingError carries the ErrorResponse fields as a dict (C: SQLSTATE, M: message, D: detail).
    """
    orig = getattr(exc, "orig", exc)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    texts = [getattr(orig, "pgerror", None) or ""]
    for arg in getattr(orig, "args", ()):
        if isinstance(arg, dict):
            state = state or arg.get("C")
            texts += [arg.get("M") or "", arg.get("D") or ""]
        elif isinstance(arg, str):
            texts.append(arg)
    diag = getattr(orig, "diag", None)  # psycopg's parsed ErrorResponse
    if diag is not None:
        texts += [getattr(diag, "message_primary", None) or "", getattr(diag, "message_detail", None) or ""]
    return state, "\n".join(t.strip() for t in texts if t)


def _connection_lost(exc: BaseException) -> bool:
    """A driver error that means the connection is gone (the redshift_connector dialect does not say so)."""
    orig = getattr(exc, "orig", exc)
    if type(orig).__name__ != "InterfaceError":
        return False
    args = getattr(orig, "args", ())
    if any(isinstance(arg, (OSError, TimeoutError)) for arg in args):
        return True
    return any(isinstance(arg, str) and _CONNECTION_LOST.search(arg) for arg in args)


def watch_for_lost_connections(engine: sa.Engine) -> sa.Engine:
    """Tell SQLAlchemy which driver errors are disconnects, so it drops the dead connection from the pool
    (and its pre-ping recognises one) instead of handing it to the retry, which would fail on it again."""

    def handle_error(context) -> None:
        if not context.is_disconnect and _connection_lost(context.original_exception):
            context.is_disconnect = True

    sa.event.listen(engine, "handle_error", handle_error)
    return engine


def is_config_error(exc: BaseException) -> bool:
    """A configuration, permission or credential error: the run fails loudly, the file is not held to it."""
    if isinstance(exc, ConfigError):
        return True
    if isinstance(exc, (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError)):
        return True
    if isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code") in _CONFIG_S3_CODES
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        state, message = driver_error(exc)
        if state and state.startswith(_CONFIG_SQLSTATE_PREFIXES):
            return True
        return bool(_CONFIG_MESSAGES.search(message))
    return False


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, TERMINAL) or is_config_error(exc):
        return False
    if isinstance(
        exc,
        (
            StagedObjectMissing,
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectionError,
            botocore.exceptions.ReadTimeoutError,
            ConnectionError,
            TimeoutError,
        ),
    ):
        return True
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code") in _RETRYABLE_S3_CODES or status >= 500
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sqlalchemy.exc.OperationalError):
            return True
        if _connection_lost(exc):
            return True
        state, message = driver_error(exc)
        if state and state.startswith(_RETRYABLE_SQLSTATE_PREFIXES):
            return True
        return state in (None, "XX000") and bool(_REDSHIFT_TRANSIENT.search(message))
    return False


def retry_condition(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn`: retry only what another attempt can fix."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - classifying is the point
        return is_retryable(exc)
    return False
