"""Prefect's in-memory event de-duplication with a window of seconds instead of minutes, for one test's server.

Prefect 3.8.8 has no setting for the windows themselves, only settings naming the module that provides the
classes holding them: PREFECT_SERVER_EVENTS_MESSAGING_CACHE (the event bus drops an id it saw:
prefect/server/utilities/messaging/memory.py `Cache`, 1,000 ids for 5 minutes) and
PREFECT_SERVER_EVENTS_CAUSAL_ORDERING (the trigger evaluator skips an id it processed:
prefect/server/events/ordering/memory.py `CausalOrdering`, 10,000 ids for 30 minutes, SEEN_EXPIRATION).
This module is such a module: the same classes, with ETL_TEST_EVENT_WINDOW_SECONDS as both windows.
"""

from __future__ import annotations

import os

from cachetools import TTLCache
from prefect.server.events.ordering.memory import CausalOrdering as _CausalOrdering
from prefect.server.utilities.messaging.memory import Cache as _Cache

WINDOW_SECONDS = float(os.environ.get("ETL_TEST_EVENT_WINDOW_SECONDS", "3"))


class Cache(_Cache):
    _recently_seen_messages = TTLCache(maxsize=1000, ttl=WINDOW_SECONDS)


class CausalOrdering(_CausalOrdering):
    def __init__(self, scope: str) -> None:
        fresh = not getattr(self, "_initialized", False)  # one instance per scope, initialised once
        super().__init__(scope)
        if fresh:
            self._seen_events = TTLCache(maxsize=10000, ttl=WINDOW_SECONDS)
