"""Shared by the tasks: retry policy and one engine per process."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.results import ResultStore
from prefect.utilities.math import clamped_poisson_interval

from berlin_rentals.config import retry_delays
from berlin_rentals.errors import is_retryable, retry_condition
from berlin_rentals.ingest_result import is_expected
from berlin_rentals.warehouse.ddl import make_engine

# An I/O step: transient S3 and database errors get three more tries with growing back-off (2, 8,
# 30 s, or ETL_RETRY_DELAYS: IOStep reads it when Prefect asks), data errors none. Never cached (only the
# transform is): a ledger check must always ask the ledger, and Prefect's default policy would hash every
# input, a whole batch included, on each run.
IO_STEP = dict(
    retries=3,
    retry_jitter_factor=0.2,
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)


class IOStep(Task):
    """A task whose retry delays are the settings' ETL_RETRY_DELAYS as they are when Prefect asks for them
    (a task run created, a retry scheduled, run_inline's retry), not as they were when the task was defined:
    Prefect itself fixes a task's delays at decoration, which made the variable one read at import."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._delays_from_settings = True

    @property
    def retry_delay_seconds(self) -> list[float] | None:
        # Before __init__ is done Prefect only checks the value it was given (none): nothing to read yet.
        return retry_delays() if self.__dict__.get("_delays_from_settings") else None

    @retry_delay_seconds.setter
    def retry_delay_seconds(self, value: Any) -> None:
        """Task.__init__ sets Prefect's default here; the settings' delays are read at use instead."""


def io_step(**options: Any):
    """`@task(**IO_STEP, **options)`, as an IOStep: `@io_step(name="extract")`. A step cached by a key of its
    own (cache_key_fn) drops IO_STEP's NO_CACHE."""
    settings = IO_STEP | options
    if "cache_key_fn" in options:
        settings.pop("cache_policy")

    def decorate(fn):
        return IOStep(fn=fn, **settings)

    return decorate


@lru_cache(maxsize=4)
def warehouse_engine(url: str) -> sa.Engine:
    return make_engine(url)


class ExpectedErrorTracebacks(logging.Filter):
    """Drop the traceback from Prefect's log records of an expected data or configuration error (a file
    that is not a zip, an object that is gone, a setting that is missing): the message already names the
    file, and the run's closing line says what happened and how to fix it. Tracebacks of anything else
    (a bug, a driver error that outlived its retries) are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and is_expected(record.exc_info[1]):
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


def run_inline(step: Task, *args: Any, **kwargs: Any) -> Any:
    """Run a task's function inside the caller's run, with the task's own retry policy, but no task run.

    The catch-up ingests each file in one task run and calls the steps this way: the same functions,
    the same retries, delays and retry condition as when the `ingest-file` flow calls them as tasks,
    without a task run (and its state events) per step. Each retry is logged as Prefect logs one.
    A step cached in result storage of its own (transform-stage) reads and writes the same entries as
    its task runs do, through Prefect's ResultStore: the catch-up is what retries a file whose load
    failed, so without it the cache would rarely answer.
    """
    cache = _inline_cache(step, args, kwargs)
    if cache is None:
        return _with_retries(step, *args, **kwargs)
    store, key = cache
    if not step.refresh_cache:
        try:
            if store.exists(key):
                value = store.read(key).result
                _logger().info("%s: cached result %s", step.name, key)
                return value
        except Exception as exc:  # noqa: BLE001 - a cache that cannot be read is a miss, as in the task engine
            _logger().warning("%s: the cached result %s could not be read (%r): running it", step.name, key, exc)
    value = _with_retries(step, *args, **kwargs)
    expiration = datetime.now(UTC) + step.cache_expiration if step.cache_expiration else None
    try:
        store.write(obj=value, key=key, expiration=expiration)
    except Exception as exc:  # noqa: BLE001 - the result is in hand; only a later hit is lost
        _logger().warning("%s: the result was not cached (%r)", step.name, exc)
    return value


def _inline_cache(step: Task, args: tuple, kwargs: dict) -> tuple[ResultStore, str] | None:
    """The step's result store and cache key, as its task run would compute them; None if it caches nothing."""
    if not (step.persist_result and step.result_storage is not None and step.cache_key_fn is not None):
        return None
    inputs = dict(inspect.signature(step.fn).bind(*args, **kwargs).arguments)
    key = step.cache_policy.compute_key(task_ctx=None, inputs=inputs, flow_parameters={})
    if key is None:
        return None
    return ResultStore(cache_result_in_memory=False).update_for_task(step), key


def _with_retries(step: Task, *args: Any, **kwargs: Any) -> Any:
    condition = step.retry_condition_fn
    if condition is not None and condition is not retry_condition:
        raise TypeError(f"{step.name}: run_inline knows retry_condition only, not {condition!r}")
    retries = step.retries or 0
    for attempt in range(retries + 1):
        try:
            return step.fn(*args, **kwargs)
        except Exception as exc:
            if attempt >= retries or (condition is not None and not is_retryable(exc)):
                raise
            delay = _retry_delay(step, attempt)
            _logger().warning("%s failed with %r - retry %d/%d in %.1f s", step.name, exc, attempt + 1, retries, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _retry_delay(step: Task, attempt: int) -> float:
    """The delay before retry `attempt + 1`, as Prefect's task engine computes it (list, last repeated; jitter)."""
    delays = step.retry_delay_seconds
    if not delays:
        return 0.0
    delay = delays[min(attempt, len(delays) - 1)] if isinstance(delays, Sequence) else delays
    if step.retry_jitter_factor and delay > 0:
        delay = clamped_poisson_interval(delay, clamping_factor=step.retry_jitter_factor)
    return float(delay)


def _logger() -> logging.Logger | logging.LoggerAdapter:
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)
