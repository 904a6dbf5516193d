"""Shared by the tasks: retry policy and one engine per process."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.math import clamped_poisson_interval

from berlin_rentals.config import retry_delays
from berlin_rentals.errors import is_retryable, retry_condition
from berlin_rentals.warehouse.ddl import make_engine

# An I/O step: transient S3 and database errors get three more tries with growing back-off (2, 8,
# 30 s, or ETL_RETRY_DELAYS, read at import), data errors none. Never cached (only the transform is):
# a ledger check must always ask the ledger, and Prefect's default policy would hash every input, a
# whole batch included, on each run.
IO_STEP = dict(retries=3, retry_delay_seconds=retry_delays(), retry_jitter_factor=0.2,
               retry_condition_fn=retry_condition, cache_policy=NO_CACHE)


@lru_cache(maxsize=4)
def warehouse_engine(url: str) -> sa.Engine:
    return make_engine(url)


def run_inline(step: Task, *args: Any, **kwargs: Any) -> Any:
    """Run a task's function inside the caller's run, with the task's own retry policy, but no task run.

    The catch-up ingests each file in one task run and calls the steps this way: the same functions,
    the same retries, delays and retry condition as when the `ingest-file` flow calls them as tasks,
    without a task run (and its state events) per step. Each retry is logged as Prefect logs one.
    """
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
