"""Shared by the tasks: retry policy and one engine per process."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from prefect import task
from prefect.cache_policies import NO_CACHE

from berlin_rentals.config import retry_delays
from berlin_rentals.errors import retry_condition
from berlin_rentals.ingest_result import is_expected
from berlin_rentals.warehouse.ddl import make_engine

# The one retry table: every step of every flow takes its retries from here.
#
# An I/O step: transient S3 and database errors get three more tries with growing back-off (2, 8,
# 30 s, or ETL_RETRY_DELAYS, read from the settings when the tasks are imported: every flow run is a
# process of its own), data errors none. Never cached (only the
# transform is): a ledger check must always ask the ledger, and Prefect's default policy would hash every
# input, a whole batch included, on each run.
IO_STEP = dict(
    retries=3,
    retry_delay_seconds=retry_delays(),
    retry_jitter_factor=0.2,
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)

# A step that writes to Prefect's own API (a lineage or report artifact): any error is tried twice more,
# briefly. The data is loaded by then; a run does not wait long for its paperwork.
ARTIFACT_STEP = dict(retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)


def io_step(**options: Any):
    """`@task(**IO_STEP, **options)`: `@io_step(name="extract")`. A step cached by a key of its own
    (cache_key_fn) drops IO_STEP's NO_CACHE."""
    settings = IO_STEP | options
    if "cache_key_fn" in options:
        settings.pop("cache_policy")

    return task(**settings)


@lru_cache(maxsize=4)
def warehouse_engine(url: str) -> sa.Engine:
    return make_engine(url)


# Prefect 3.8's run_flow logs this for every failed run it raises out of, with the exception.
PREFECT_ENGINE_EXIT = "Engine execution exited with unexpected exception"


class ExpectedErrorTracebacks(logging.Filter):
    """Drop the traceback from Prefect's log records of an expected data or configuration error (a file
    that is not a zip, an object that is gone, a setting that is missing): the message already names the
    file, and the run's closing line says what happened and how to fix it. Tracebacks of anything else
    (a bug, a driver error that outlived its retries) are kept.

    The engine's own line for such a run ("Engine execution exited with unexpected exception", which
    Prefect 3.8's run_flow logs for every failed run it raises out of) is dropped: the failure was expected,
    and said."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and is_expected(record.exc_info[1]):
            if record.getMessage() == PREFECT_ENGINE_EXIT:
                return False
            record.exc_info = record.exc_text = None
        return True


def quiet_expected_tracebacks() -> None:
    """Install the filter on the handlers that write run logs: the API's and the console's. Prefect logs a
    failed run's exception three times (task, flow, engine), each with exc_info, so a handler filter is the
    one place that sees all of them; idempotent."""
    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs", "prefect", "")]
    for handler in {handler for logger in loggers for handler in logger.handlers}:
        if not any(isinstance(f, ExpectedErrorTracebacks) for f in handler.filters):
            handler.addFilter(ExpectedErrorTracebacks())


quiet_expected_tracebacks()
