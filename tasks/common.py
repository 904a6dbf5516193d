"""Shared by the tasks: retry policy and one engine per process."""

from __future__ import annotations

from functools import lru_cache

import sqlalchemy as sa

from prefect.cache_policies import NO_CACHE

from berlin_rentals.config import retry_delays
from berlin_rentals.errors import retry_condition
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
