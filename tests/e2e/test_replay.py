"""Replaying rejected lines after a transform fix: the replay-rejects deployment run on the worker (the flow on
the stack: tests/stack/test_replay.py).

The "fix" is simulated honestly, without mocking the project's code: a file is ingested with a small
ETL_MAX_LINE_BYTES, so its long lines are rejected `line_too_long`; the replay then runs with the
normal limit, under which those lines pass. Two other lines are bad for good and stay rejected.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.helpers import query
from tests.stack.test_replay import ingest_with_small_limit


@pytest.mark.slow
def test_the_replay_rejects_deployment_runs_on_a_worker(deployed_stack, stack_env, s3, monkeypatch):
    """prefect.yaml's manual deployment, run as from the UI: the worker runs it in the stack's schema."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from berlin_rentals.config import Settings

    stack = deployed_stack
    warehouse = Settings.from_env(stack_env)
    modified = datetime(2031, 3, 6, 9, 10, tzinfo=UTC)
    key, etag, _, _ = ingest_with_small_limit(warehouse, s3, monkeypatch, modified)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("replay-rejects/replay-rejects")
    assert deployment.entrypoint == "flows/replay_rejects.py:replay_rejects" and not deployment.schedules
    started = not stack._running_pid("worker")
    if started:
        stack.start_service("worker")
    try:
        run = run_deployment(
            "replay-rejects/replay-rejects", parameters={"bucket": warehouse.raw_bucket, "key": key}, timeout=120
        )
    finally:
        if started:
            stack.stop_service("worker")
    assert run.state.is_completed(), run.state
    assert (
        query(warehouse, "SELECT rejected_count FROM {schema}.load_ledger WHERE key = :k AND etag = :e", k=key, e=etag)[
            0
        ][0]
        == 3
    )
