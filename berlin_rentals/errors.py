"""Tell retryable failures from terminal ones, as dlt does: retrying a data error only delays parking it."""

from __future__ import annotations

import botocore.exceptions
import sqlalchemy.exc

from berlin_rentals.archive import BadArchive
from berlin_rentals.config import ConfigError
from berlin_rentals.source import InvalidSource


class ObjectGone(LookupError):
    """The object (or this version of it) is no longer in the raw bucket. Terminal for this version."""


class ObjectChanged(LookupError):
    """The object under the key now has another ETag than the one we were asked to load. Terminal."""


TERMINAL = (BadArchive, InvalidSource, ConfigError, ObjectGone, ObjectChanged)

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


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, TERMINAL):
        return False
    if isinstance(
        exc,
        (
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
        state = _sqlstate(exc)
        return bool(state) and state.startswith(_RETRYABLE_SQLSTATE_PREFIXES)
    return False


def retry_condition(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn`: retry only what another attempt can fix."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - classifying is the point
        return is_retryable(exc)
    return False
