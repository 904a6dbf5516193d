"""The local stack is a contract: `make up` settings, real S3 events on SQS, idempotent up, clean down."""

from __future__ import annotations

import json

import boto3
import psycopg
import sqlalchemy as sa

from berlin_rentals.config import read_env_file
from berlin_rentals.source import decode_event_key, normalize_etag
from deployments.local_stack import LocalStack, _http_ok, _pid_alive

REQUIRED = {"WAREHOUSE_URL", "WAREHOUSE_SCHEMA", "ETL_RAW_BUCKET", "ETL_RAW_PREFIX", "ETL_STAGING_BUCKET",
            "ETL_QUEUE_NAME", "ETL_DLQ_NAME", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION", "PREFECT_API_URL"}


def test_the_session_stack_has_every_setting_and_healthy_services(stack_env):
    assert REQUIRED <= set(stack_env)
    assert _http_ok(stack_env["PREFECT_API_URL"] + "/health")
    url = sa.make_url(stack_env["WAREHOUSE_URL"])
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database) as conn:
        assert conn.execute("select version()").fetchone()[0].startswith("PostgreSQL 16")


def test_an_upload_under_the_raw_prefix_is_announced_on_the_queue_with_its_etag(stack_env):
    s3 = boto3.client("s3", endpoint_url=stack_env["AWS_ENDPOINT_URL"])
    sqs = boto3.client("sqs", endpoint_url=stack_env["AWS_ENDPOINT_URL"])
    queue = sqs.get_queue_url(QueueName=stack_env["ETL_QUEUE_NAME"])["QueueUrl"]
    key = stack_env["ETL_RAW_PREFIX"] + "stack test/ä b.zip"
    etag = normalize_etag(s3.put_object(Bucket=stack_env["ETL_RAW_BUCKET"], Key=key, Body=b"x")["ETag"])
    s3.put_object(Bucket=stack_env["ETL_RAW_BUCKET"], Key="elsewhere/not-announced.zip", Body=b"x")
    seen = []
    for _ in range(5):
        for message in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2, MaxNumberOfMessages=10).get("Messages", []):
            for record in json.loads(message["Body"]).get("Records", []):
                seen.append((decode_event_key(record["s3"]["object"]["key"]), record["s3"]["object"].get("eTag")))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        if any(k == key for k, _ in seen):
            break
    assert (key, etag) in [(k, normalize_etag(e)) for k, e in seen]
    assert all(not k.startswith("elsewhere/") for k, _ in seen)
    redrive = json.loads(sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["RedrivePolicy"])
                         ["Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":" + stack_env["ETL_DLQ_NAME"])
    assert int(redrive["maxReceiveCount"]) == 5


def test_up_twice_keeps_the_same_services_and_down_stops_them(tmp_path, monkeypatch):
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    stack = LocalStack(tmp_path / "stack", services=("s3", "postgres"))
    try:
        first = stack.up()
        pids = {name: stack._running_pid(name) for name in ("moto", "postgres")}
        second = stack.up()
        assert first == second == read_env_file(tmp_path / "stack" / "env")
        assert {name: stack._running_pid(name) for name in pids} == pids
        assert stack.status() == {"moto": True, "postgres": True}
    finally:
        stack.down()
    assert not any(_pid_alive(pid) for pid in pids.values())
    assert stack.status() == {"moto": False, "postgres": False}
