"""Shared by the tasks: retry policy and one engine per process."""

from __future__ import annotations

from functools import lru_cache

import sqlalchemy as sa

from berlin_rentals.errors import retry_condition
from berlin_rentals.warehouse.ddl import make_engine

# Transient S3 and database errors get three more tries with growing back-off; data errors none.
RETRY = dict(retries=3, retry_delay_seconds=[2, 8, 30], retry_jitter_factor=0.2, retry_condition_fn=retry_condition)


@lru_cache(maxsize=4)
def warehouse_engine(url: str) -> sa.Engine:
    return make_engine(url)
