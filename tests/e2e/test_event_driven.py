"""End to end on the whole local stack: upload → S3 event → SQS → bridge → Prefect event → worker → warehouse.

Nothing here calls the flow: runs come from the `ingest-file` deployment's trigger (prefect.yaml),
executed by a real process worker. Exactly once must hold whatever the queue delivers.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

import boto3
import pytest
from prefect.deployments import run_deployment

from berlin_rentals.config import Queues
from berlin_rentals.synthetic import batch_name, derived_batch, read_sample_records
from devstack.demo import wait_until_idle
from tests.helpers import loads_of, query, scalar, upload, wait_for_status

pytestmark = pytest.mark.slow


def hourly(n: int, *, seed: int, factor: float = 1.0) -> tuple[str, bytes]:
    hour = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(hours=seed * 24 + n)
    body = derived_batch(
        read_sample_records(),
        hour,
        rent_factor=factor,
        modified=hour - timedelta(minutes=5),
        seed=seed * 100 + n,
        new_listings=2,
    )
    return batch_name(hour) + ".zip", body


def s3_notification(bucket: str, key: str, etag: str, size: int) -> str:
    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "awsRegion": "eu-central-1",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key), "size": size, "eTag": etag}},
                }
            ]
        }
    )


def test_each_version_loads_exactly_once_whatever_the_queue_delivers(event_path, warehouse, s3):
    folder = uuid.uuid4().hex[:8]
    sqs = boto3.client("sqs", endpoint_url=warehouse.aws_endpoint_url, region_name=warehouse.aws_region)
    queue = sqs.get_queue_url(QueueName=Queues.from_env().queue_name)["QueueUrl"]
    uploads = [upload(s3, warehouse, name, body, folder=folder) for name, body in (hourly(n, seed=1) for n in range(3))]
    for key, etag in uploads:
        wait_for_status(warehouse, key, etag)

    first_key, first_etag = uploads[0]
    body = s3.get_object(Bucket=warehouse.raw_bucket, Key=first_key)["Body"].read()
    # A duplicate notification, and the same content uploaded again (S3 notifies again, same ETag).
    sqs.send_message(
        QueueUrl=queue, MessageBody=s3_notification(warehouse.raw_bucket, first_key, first_etag, len(body))
    )
    assert upload(s3, warehouse, first_key.rsplit("/", 1)[-1], body, folder=folder) == (first_key, first_etag)
    # New content under the last key: a correction.
    last_key, old_etag = uploads[2]
    name, changed = hourly(2, seed=1, factor=1.5)
    _, new_etag = upload(s3, warehouse, name, changed, folder=folder)
    wait_for_status(warehouse, last_key, new_etag)
    wait_until_idle()

    for key, _ in uploads:
        assert loads_of(warehouse, key) == (13, 1), key
    statuses = dict(query(warehouse, "SELECT etag, status FROM {schema}.load_ledger WHERE key = :k", k=last_key))
    assert statuses == {old_etag: "superseded", new_etag: "loaded"}
    assert scalar(warehouse, "SELECT COUNT(*) FROM {schema}.load_ledger WHERE key = :k", k=first_key) == 1


def test_a_file_uploaded_while_the_worker_is_down_loads_when_it_returns(event_path, warehouse, s3):
    event_path.stop_service("worker")
    try:
        name, body = hourly(0, seed=2)
        key, etag = upload(s3, warehouse, name, body)
        time.sleep(5)
        assert not query(warehouse, "SELECT 1 FROM {schema}.load_ledger WHERE key = :k", k=key)
    finally:
        event_path.start_service("worker")
    wait_for_status(warehouse, key, etag)
    assert loads_of(warehouse, key) == (13, 1)


def test_a_malformed_message_goes_to_the_dlq_and_the_bridge_keeps_going(event_path, warehouse, s3):
    sqs = boto3.client("sqs", endpoint_url=warehouse.aws_endpoint_url, region_name=warehouse.aws_region)
    queue = sqs.get_queue_url(QueueName=Queues.from_env().queue_name)["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=Queues.from_env().dlq_name)["QueueUrl"]
    marker = f"garbage-{uuid.uuid4().hex}"
    sqs.send_message(QueueUrl=queue, MessageBody=marker)
    deadline, dead = time.monotonic() + 60, []
    while time.monotonic() < deadline and not dead:
        for message in sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        ).get("Messages", []):
            if message["Body"] == marker:
                dead.append(message)
            sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
    assert dead, "the malformed message never reached the DLQ"
    assert "not JSON" in dead[0]["MessageAttributes"]["reason"]["StringValue"]
    name, body = hourly(0, seed=3)
    key, etag = upload(s3, warehouse, name, body)
    wait_for_status(warehouse, key, etag)


def test_two_deployment_runs_of_one_etag_at_once_load_once(event_path, warehouse, s3):
    name, body = hourly(0, seed=4)
    key, etag = upload(s3, warehouse, name, body)  # its event starts one run
    params = {"bucket": warehouse.raw_bucket, "key": key, "etag": etag}
    for _ in range(2):  # and two more, at once, as from the UI or the CLI
        run_deployment("ingest-file/ingest-file", parameters=params, timeout=0)
    wait_for_status(warehouse, key, etag)
    wait_until_idle()
    assert loads_of(warehouse, key) == (13, 1)
    assert scalar(warehouse, "SELECT COUNT(*) FROM {schema}.load_ledger WHERE key = :k", k=key) == 1


def test_a_file_whose_notification_never_came_is_loaded_by_catch_up(event_path, warehouse, s3):
    from berlin_rentals.config import ProvisioningSettings
    from devstack.local_stack import LOCAL_VISIBILITY_TIMEOUT
    from flows.catch_up import catch_up
    from provisioning.aws import ensure

    folder = uuid.uuid4().hex[:8]
    name, body = hourly(1, seed=5)
    s3.put_bucket_notification_configuration(Bucket=warehouse.raw_bucket, NotificationConfiguration={})
    try:
        key, etag = upload(s3, warehouse, name, body, folder=folder)
        time.sleep(3)
        assert not query(warehouse, "SELECT 1 FROM {schema}.load_ledger WHERE key = :k", k=key)
    finally:
        # The notification back, as `make up` made it.
        ensure(ProvisioningSettings.from_env(), visibility_timeout=LOCAL_VISIBILITY_TIMEOUT)
    hour = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(hours=5 * 24 + 1)
    report = catch_up(
        since=hour - timedelta(hours=2), until=hour + timedelta(hours=1), prefix=f"{warehouse.raw_prefix}{folder}/"
    )
    assert (report["found"], report["loaded_now"]) == (1, 1)
    assert report["gaps"] == [(hour - timedelta(hours=2)).isoformat(), (hour - timedelta(hours=1)).isoformat()]
    wait_for_status(warehouse, key, etag)
    assert loads_of(warehouse, key) == (13, 1)


def test_sigterm_stops_the_bridge_cleanly_and_nothing_sent_meanwhile_is_lost(event_path, warehouse, s3):
    log = event_path.log_dir / "bridge.log"
    stopped_before = log.read_text().count("bridge stopped")
    started = time.monotonic()
    event_path.stop_service("bridge")  # SIGTERM, then SIGKILL only after 10 s
    assert time.monotonic() - started < 8
    assert log.read_text().count("bridge stopped") == stopped_before + 1
    name, body = hourly(0, seed=6)
    key, etag = upload(s3, warehouse, name, body)
    time.sleep(2)
    assert not query(warehouse, "SELECT 1 FROM {schema}.load_ledger WHERE key = :k", k=key)
    event_path.start_service("bridge")
    wait_for_status(warehouse, key, etag)


def test_a_key_with_spaces_plus_and_non_ascii_arrives_url_encoded_and_loads_under_its_exact_name(
    event_path, warehouse, s3
):
    name, body = hourly(0, seed=7)
    key, etag = upload(s3, warehouse, name, body, folder=f"Neukölln Süd+Nord {uuid.uuid4().hex[:6]}")
    wait_for_status(warehouse, key, etag)
    wait_until_idle()
    assert loads_of(warehouse, key) == (13, 1)
    assert scalar(warehouse, "SELECT COUNT(*) FROM {schema}.load_ledger WHERE key = :k", k=key) == 1
