"""`python -m deployments.aws`: idempotent resources (against the moto server) and least-privilege policies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import boto3
import botocore.exceptions
import pytest
from moto import mock_aws

from berlin_rentals.config import Settings
from berlin_rentals.source import decode_event_key
from deployments.aws import ensure, policies


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
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == first["dlq_arn"] and int(redrive["maxReceiveCount"]) == 20
    assert attributes["MessageRetentionPeriod"] == "1209600"
    rules = s3.get_bucket_lifecycle_configuration(Bucket=f"staging-{suffix}")["Rules"]
    assert {(r["Filter"]["Prefix"], r["Expiration"]["Days"]) for r in rules} == {("clean/", 14), ("results/", 14)}
    with pytest.raises(botocore.exceptions.ClientError, match="NoSuchLifecycleConfiguration"):
        s3.get_bucket_lifecycle_configuration(Bucket=f"raw-{suffix}")  # the system of record never expires
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


def test_make_up_expires_the_stacks_staged_parquet_and_results_not_its_raw_files(stack_env):
    s3 = boto3.client("s3", endpoint_url=stack_env["AWS_ENDPOINT_URL"])
    rules = s3.get_bucket_lifecycle_configuration(Bucket=stack_env["ETL_STAGING_BUCKET"])["Rules"]
    assert {(r["Filter"]["Prefix"], r["Expiration"]["Days"], r["Status"]) for r in rules} == {
        (stack_env["ETL_STAGING_PREFIX"], 14, "Enabled"),
        ("results/", 14, "Enabled"),
    }
    with pytest.raises(botocore.exceptions.ClientError, match="NoSuchLifecycleConfiguration"):
        s3.get_bucket_lifecycle_configuration(Bucket=stack_env["ETL_RAW_BUCKET"])


@mock_aws
def test_the_retention_is_a_setting_and_a_second_ensure_replaces_the_rules(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "eu-central-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    env = {"WAREHOUSE_URL": "postgresql://x", "ETL_STAGING_PREFIX": "parquet", "ETL_RESULTS_PREFIX": "prefect-results"}
    ensure(Settings.from_env({**env, "ETL_STAGING_RETENTION_DAYS": "3"}))
    ensure(Settings.from_env({**env, "ETL_STAGING_RETENTION_DAYS": "7"}))
    s3 = boto3.client("s3", region_name="eu-central-1")
    rules = s3.get_bucket_lifecycle_configuration(Bucket="rentals-staging")["Rules"]
    assert sorted((r["Filter"]["Prefix"], r["Expiration"]["Days"]) for r in rules) == [
        ("parquet/", 7),
        ("prefect-results/", 7),
    ]
    assert all(r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1 for r in rules)


def test_only_the_provisioner_may_set_the_lifecycle_and_no_role_may_delete():
    settings = Settings.from_env({"WAREHOUSE_URL": "postgresql://x", "ETL_STAGING_BUCKET": "stage-b"})
    docs = policies(settings, "123456789012")

    def grants(doc: str, action: str) -> list:
        return [s["Resource"] for s in docs[doc]["Statement"] if action in s["Action"]]

    assert grants("provisioner", "s3:PutLifecycleConfiguration") == ["arn:aws:s3:::stage-b"]
    for doc in docs:
        actions = {
            a for s in docs[doc]["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        }
        assert not {a for a in actions if a.startswith("s3:Delete")}, doc
        if doc != "provisioner":
            assert not {a for a in actions if "Lifecycle" in a or a.startswith("s3:PutBucket")}, doc
    # a deleted object answers the bridge's HEAD with 404 (ignored), not 403 (kept for retry)
    assert grants("bridge-task-role", "s3:ListBucket") == ["arn:aws:s3:::rentals-raw"]
    assert grants("dlq-replay", "sqs:SendMessage") == ["arn:aws:sqs:eu-central-1:123456789012:rentals-raw-events"]
