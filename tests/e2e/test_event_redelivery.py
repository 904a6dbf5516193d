"""A redelivery after Prefect's de-duplication window starts a second run; the ledger makes it one load.

Prefect drops a repeated event id only while it is in two in-memory caches of the server (the event bus's,
5 minutes; the trigger evaluator's, 30 minutes; both lost on a restart). SQS redelivers a message the bridge
did not delete after its visibility timeout (300 s), so a repeat can come after the first window, or after a
server restart. A Prefect server of this test's own has both windows shortened to seconds
(tests/short_event_windows.py); the event is the bridge's own (same id for the same object version).
"""

from __future__ import annotations

import time

import pytest

from tests.helpers import prefect_api

pytestmark = pytest.mark.slow

WINDOW_SECONDS = 3


@pytest.fixture
def short_window_prefect(tmp_path, monkeypatch, stack_env):
    """A Prefect server (and prefect.yaml's deployments) with short de-duplication windows; its settings."""
    from devstack.local_stack import REPO, LocalStack

    # The server inherits this process's environment (LocalStack._prefect_server_env).
    monkeypatch.setenv("PREFECT_SERVER_EVENTS_MESSAGING_CACHE", "tests.short_event_windows")
    monkeypatch.setenv("PREFECT_SERVER_EVENTS_CAUSAL_ORDERING", "tests.short_event_windows")
    monkeypatch.setenv("ETL_TEST_EVENT_WINDOW_SECONDS", str(WINDOW_SECONDS))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    stack = LocalStack(tmp_path / "stack", services=("prefect",))
    try:
        env = stack.up()
        stack.deploy()
        yield env
    finally:
        stack.down(save_s3=False)


def _ingest_runs(env: dict[str, str]) -> list[dict]:
    """The runs of ingest-file (the catch-up's schedule has runs too), oldest first."""
    deployment = prefect_api(env, "/deployments/name/ingest-file/ingest-file")
    runs = prefect_api(env, "/flow_runs/filter", {"sort": "EXPECTED_START_TIME_ASC"})
    return [run for run in runs if run["deployment_id"] == deployment["id"]]


def _two(env: dict[str, str]) -> list[dict] | None:
    runs = _ingest_runs(env)
    return runs if len(runs) == 2 else None


def test_a_redelivery_after_the_window_is_a_second_run_and_still_one_load(short_window_prefect, settings, s3):
    from berlin_rentals.s3 import head_source
    from bridge.sqs_bridge import post_events, prefect_event
    from flows.ingest import ingest_file
    from tests.helpers import loads_of, query, upload, wait_for

    env = short_window_prefect
    name = "immobilienscout24_berlin_20310601_07.zip"
    from berlin_rentals.synthetic import SAMPLE_ZIP

    key, etag = upload(s3, settings, name, SAMPLE_ZIP.read_bytes(), folder=f"redelivery-{time.time_ns()}")

    def post(event: dict) -> None:
        post_events(env["PREFECT_API_URL"], [event], auth_string=env["PREFECT_API_AUTH_STRING"])

    event = prefect_event(head_source(s3, settings.raw_bucket, key, etag, raw_bucket=settings.raw_bucket))

    post(event)
    post(event)  # a prompt repeat, within the window: dropped
    first = wait_for(lambda: _ingest_runs(env), 30, "a run of ingest-file for the event")
    time.sleep(WINDOW_SECONDS + 1)
    assert len(_ingest_runs(env)) == 1

    post(event)  # the same id, after the window: SQS redelivering after its visibility timeout
    runs = wait_for(lambda: _two(env), 30, "a second run for the repeat")
    assert {run["id"] for run in runs} > {first[0]["id"]}
    params = [{k: run["parameters"][k] for k in ("bucket", "key", "etag")} for run in runs]
    assert params[0] == params[1] == {"bucket": settings.raw_bucket, "key": key, "etag": etag}

    # Both runs do what a worker would run: the ledger claim makes the second one a skip.
    outcomes = [ingest_file(**p)["status"] for p in params]
    assert outcomes == ["loaded", "skipped"]
    assert loads_of(settings, key) == (11, 1)
    rows = query(settings, "SELECT status FROM {schema}.load_ledger WHERE key = :k", k=key)
    assert [r.status for r in rows] == ["loaded"]
