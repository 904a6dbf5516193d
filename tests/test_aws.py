"""`python -m deployments.aws`: idempotent resources (against the moto server) and least-privilege policies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import boto3

from berlin_rentals.config import Settings
from berlin_rentals.source import decode_event_key
from deployments.aws import policies


def run_aws(command: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "deployments.aws", command], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ensure_twice_creates_the_event_path_once(stack_env):
    suffix = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        **stack_env,
        "ETL_RAW_BUCKET": f"raw-{suffix}",
        "ETL_STAGING_BUCKET": f"staging-{suffix}",
        "ETL_QUEUE_NAME": f"events-{suffix}",
        "ETL_DLQ_NAME": f"events-{suffix}-dlq",
        "ETL_RAW_PREFIX": "incoming/",
    }
    first, second = json.loads(run_aws("ensure", env)), json.loads(run_aws("ensure", env))
    assert first == second
    endpoint = stack_env["AWS_ENDPOINT_URL"]
    s3, sqs = boto3.client("s3", endpoint_url=endpoint), boto3.client("sqs", endpoint_url=endpoint)
    assert {f"raw-{suffix}", f"staging-{suffix}"} <= {b["Name"] for b in s3.list_buckets()["Buckets"]}
    queues = sqs.list_queues(QueueNamePrefix=f"events-{suffix}")["QueueUrls"]
    assert sorted(queues) == sorted([first["queue_url"], first["dlq_url"]])
    attributes = sqs.get_queue_attributes(QueueUrl=first["queue_url"], AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "300"
    assert json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"] == first["dlq_arn"]
    notifications = s3.get_bucket_notification_configuration(Bucket=f"raw-{suffix}")["QueueConfigurations"]
    assert len(notifications) == 1 and notifications[0]["QueueArn"] == first["queue_arn"]

    s3.put_object(Bucket=f"raw-{suffix}", Key="incoming/a b.zip", Body=b"x")
    keys = []
    for _ in range(5):  # S3 first sends an s3:TestEvent when a notification is configured
        for message in sqs.receive_message(QueueUrl=first["queue_url"], WaitTimeSeconds=2, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            keys += [decode_event_key(r["s3"]["object"]["key"]) for r in json.loads(message["Body"]).get("Records", [])]
        if keys:
            break
    assert keys == ["incoming/a b.zip"]


def test_policies_grant_read_on_raw_read_write_on_staging_and_nothing_more():
    settings = Settings.from_env(
        {"WAREHOUSE_URL": "postgresql://x", "ETL_RAW_BUCKET": "raw-b", "ETL_STAGING_BUCKET": "stage-b"}
    )
    docs = policies(settings, "123456789012")
    worker = docs["worker-task-role"]["Statement"]
    writes = [s for s in worker if "s3:PutObject" in s["Action"]]
    assert [w["Resource"] for w in writes] == ["arn:aws:s3:::stage-b/clean/*"]
    reads = {s["Resource"] for s in worker if "s3:GetObject" in s["Action"]}
    assert reads == {"arn:aws:s3:::raw-b/raw/*", "arn:aws:s3:::stage-b/clean/*"}
    assert not any("*" == s["Resource"] or s["Action"] == "*" for doc in docs.values() for s in doc["Statement"])
    redshift = docs["redshift-copy-role"]["Statement"]
    assert {a for s in redshift for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])} == {
        "s3:GetObject",
        "s3:ListBucket",
    }
    bridge_actions = {a for s in docs["bridge-task-role"]["Statement"] for a in s["Action"]}
    assert "sqs:DeleteMessage" in bridge_actions and not any(a.startswith("s3:Put") for a in bridge_actions)
