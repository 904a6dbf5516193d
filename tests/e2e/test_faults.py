"""Faults injected for real (processes, sockets, HTTP), and the warehouse measured against a clean load.

Each test ends by comparing the warehouse with a clean single load of the same files into a schema of
its own: rows lost and rows doubled (the goal is zero) are printed (`pytest -s`) and asserted.
Nothing of the project's own code is mocked: the worker is SIGKILLed, PostgreSQL connections are cut
in a TCP proxy or terminated by the server, the S3 endpoint answers 503 or loses the object behind an
HTTP proxy, and the SQS bridge is SIGKILLed while its DeleteMessage is held in a proxy. Here the bridge's faults, on the
event path (worker and bridge running); the others are in tests/stack/test_faults.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort

from berlin_rentals.config import Queues, Settings
from berlin_rentals.synthetic import batch_name
from devstack.demo import wait_until_idle
from tasks.common import warehouse_engine
from tests.faults import (
    DIMENSIONS,
    HttpProxy,
    Request,
    Stall,
    fresh_batch,
    lost_and_doubled,
    report,
    warehouse_rows,
)
from tests.helpers import (
    loads_of,
    upload,
    wait_for,
    wait_for_status,
)
from tests.stack.test_faults import child_env, clean_load, first_id, hour_of, ledger

REPO = Path(__file__).resolve().parents[2]


def ingest_runs(key: str, *, deployed_only: bool = True) -> list:
    """The ingest-file flow runs of one key (deployment runs: the event path's and the UI's)."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["ingest-file"])),
            limit=200,
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        )
    return [r for r in runs if r.parameters.get("key") == key and (r.deployment_id or not deployed_only)]


# ---- the event path: bridge, worker, deployments -------------------------------------------------


def measure_shared(name: str, settings: Settings, stack_env: dict, files: list[tuple[str, str]]) -> tuple[int, int]:
    """In the stack's shared schema: the files' own rows, and the dimension ids a clean load of them writes."""
    expected = clean_load(stack_env, files, shared=True)
    got = warehouse_rows(warehouse_engine(settings.warehouse_url), settings.warehouse_schema, [k for k, _ in files])
    for table in DIMENSIONS:  # other files' dimension rows are not ours to count
        got[table] = type(got[table])({k: n for k, n in got[table].items() if k in expected[table]})
    return report(name, lost_and_doubled(expected, got), expected)


def queue_empty(sqs, queue: str) -> bool:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return all(v == "0" for v in attributes.values())


def receipt_handle(request: Request) -> str:
    try:
        return json.loads(request.body)["ReceiptHandle"]
    except (ValueError, KeyError):
        from urllib.parse import parse_qs

        return parse_qs(request.body.decode())["ReceiptHandle"][0]


@pytest.mark.slow
def test_bridge_killed_between_event_and_delete_the_redelivery_loads_nothing_twice(
    event_path, warehouse, s3, stack_env, tmp_path
):
    sqs = boto3.client("sqs", endpoint_url=warehouse.aws_endpoint_url, region_name=warehouse.aws_region)
    queue = sqs.get_queue_url(QueueName=Queues.from_env().queue_name)["QueueUrl"]
    held: list[tuple[str, Stall]] = []

    folder = uuid.uuid4().hex[:8]
    key = f"{warehouse.raw_prefix}{folder}/{batch_name(hour_of(10))}.zip"
    uri = f"s3://{warehouse.raw_bucket}/{key} (ETag"
    log = tmp_path / "bridge.log"

    def hold_first_delete(request: Request):
        # The bridge logs the event of a message, then deletes it: the first delete after our line is ours.
        if request.sqs_action == "DeleteMessage" and not held and uri in log.read_text():
            stall = Stall()
            held.append((receipt_handle(request), stall))
            return stall
        return None

    event_path.stop_service("bridge")
    proxy = HttpProxy(warehouse.aws_endpoint_url, hold_first_delete)
    with log.open("wb") as out:
        bridge = subprocess.Popen(
            [sys.executable, "-m", "bridge.sqs_bridge"],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=child_env(tmp_path, AWS_ENDPOINT_URL=proxy.url, ETL_BRIDGE_WAIT_SECONDS="1"),
        )
    try:
        _, etag = upload(
            s3,
            warehouse,
            batch_name(hour_of(10)) + ".zip",
            fresh_batch(hour_of(10), first_id=first_id(10), listings=20),
            folder=folder,
        )
        wait_for(lambda: held, 60, "the bridge's DeleteMessage of our message")
        os.kill(bridge.pid, signal.SIGKILL)  # after the event, before the delete reached the queue
        bridge.wait(10)
        held[0][1].release()  # its connection is dropped: the delete never reaches the queue
    finally:
        if bridge.poll() is None:
            bridge.kill()
            bridge.wait()
        proxy.close()
    print(f"\n[fault] bridge SIGKILLed holding DeleteMessage of the message for {key}")
    wait_for_status(warehouse, key, etag)  # the first event's run

    # SQS redelivers the message after its visibility timeout (60 s here): make that now, restart the bridge.
    stack_log = event_path.log_dir / "bridge.log"
    posted_before = stack_log.read_text().count(uri) if stack_log.exists() else 0
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=held[0][0], VisibilityTimeout=0)
    event_path.start_service("bridge")
    wait_for(lambda: stack_log.read_text().count(uri) > posted_before, 60, "the redelivered message's event")
    wait_for(lambda: queue_empty(sqs, queue), 60, "the redelivered message to be deleted")
    # A barrier: a file uploaded after it has loaded, so any run the second event caused has been created.
    marker, marker_etag = upload(
        s3, warehouse, batch_name(hour_of(11)) + ".zip", fresh_batch(hour_of(11), first_id=first_id(11), listings=5)
    )
    wait_for_status(warehouse, marker, marker_etag)
    wait_until_idle()

    runs = ingest_runs(key)
    print(
        f"[fault] events posted for it: 2; ingest runs: {len(runs)} "
        f"({', '.join(str(r.state_name) for r in runs)}); loads (flow runs in flat_snapshots): {loads_of(warehouse, key)[1]}"
    )
    assert loads_of(warehouse, key) == (20, 1)
    assert [r.state_type for r in runs].count(StateType.COMPLETED) == len(runs) >= 1
    assert [(r.status, r.attempts) for r in ledger(warehouse, key)] == [("loaded", 0)]
    assert measure_shared("SQS bridge killed between event and delete", warehouse, stack_env, [(key, etag)]) == (0, 0)


@pytest.mark.slow
def test_one_hour_delivered_10_times_and_10_files_at_once_each_load_once(event_path, warehouse, s3, stack_env):
    folder = uuid.uuid4().hex[:8]
    same = fresh_batch(hour_of(20), first_id=first_id(20), listings=5)
    others = [
        (batch_name(hour_of(21 + i)) + ".zip", fresh_batch(hour_of(21 + i), first_id=first_id(21 + i), listings=5))
        for i in range(10)
    ]
    uploads, distinct = [], []
    for name, body in others:  # back to back: 10 puts of one hour (10 notifications), 10 different files
        uploads.append(upload(s3, warehouse, batch_name(hour_of(20)) + ".zip", same, folder=folder))
        distinct.append(upload(s3, warehouse, name, body, folder=folder))
    assert len(set(uploads)) == 1
    files = uploads[:1] + distinct
    for key, etag in files:
        wait_for_status(warehouse, key, etag, timeout=150)
    wait_until_idle(150)

    repeated_key = uploads[0][0]
    runs = {key: ingest_runs(key) for key, _ in files}
    print(
        f"\n[fault] one hour uploaded 10 times: {len(runs[repeated_key])} ingest run(s); 10 files at once: "
        f"{sum(len(runs[k]) for k, _ in distinct)} runs"
    )
    for key, _ in files:
        assert loads_of(warehouse, key) == (5, 1), key
        assert [(r.status, r.attempts) for r in ledger(warehouse, key)] == [("loaded", 0)], key
    assert measure_shared("one hour 10 times + 10 files at once", warehouse, stack_env, files) == (0, 0)
