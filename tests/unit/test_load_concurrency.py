"""Loads queue for a slot of Prefect's global concurrency limit `warehouse-load`, not on the warehouse.

Here the load's side, stack-free; on the real local stack (tests/e2e/test_load_concurrency.py): the limit `make up` creates (its size ETL_LOAD_CONCURRENCY), the load task run by
Prefect in threads, PostgreSQL's pg_stat_activity showing the load sessions (`berlin-rentals load …`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_prefect_api_that_cannot_grant_a_slot_is_a_retryable_error_not_an_unbounded_load(tmp_path):
    """Nothing listens on the API's port: the load must not run without its slot, and the load step's
    retry condition must retry it (a missing limit is the only case a load runs unbounded)."""
    script = tmp_path / "slot.py"
    script.write_text(
        "from berlin_rentals.errors import is_retryable\n"
        "from tasks.load import LoadSlotUnavailable, load_slot\n"
        "try:\n"
        "    with load_slot():\n"
        "        print('ran without a slot')\n"
        "except LoadSlotUnavailable as exc:\n"
        "    print('unavailable, retryable:', is_retryable(exc))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "PREFECT_CLIENT_MAX_RETRIES": "0"}
    env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # the discard port: connection refused
    done = subprocess.run([sys.executable, str(script)], env=env, cwd=repo, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "unavailable, retryable: True", done.stdout + done.stderr[-2000:]
