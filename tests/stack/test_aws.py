"""`python -m provisioning.aws`: idempotent resources against the moto server, and the lifecycle `make up` sets (the
policies, stack-free: tests/unit/test_aws.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import boto3
import botocore.exceptions
import pytest

from berlin_rentals.source import decode_event_key
from tests.helpers import aws_client


def run_aws(command: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "provisioning.aws", command], env=env, capture_output=True, text=True, timeout=60
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
    endpoint = stack_env["AWS_ENDPOINT_URL"]
    s3, sqs = boto3.client("s3", endpoint_url=endpoint), boto3.client("sqs", endpoint_url=endpoint)
    region = {"LocationConstraint": stack_env["AWS_DEFAULT_REGION"]}
    # made before versioning was ensured: it must get it
    aws_client("s3", stack_env).create_bucket(Bucket=f"raw-{suffix}", CreateBucketConfiguration=region)
    first, second = json.loads(run_aws("ensure", env)), json.loads(run_aws("ensure", env))
    assert first == second
    assert s3.get_bucket_versioning(Bucket=f"raw-{suffix}")["Status"] == "Enabled"
    (deny,) = json.loads(s3.get_bucket_policy(Bucket=f"raw-{suffix}")["Policy"])["Statement"]
    assert deny["Effect"] == "Deny" and "s3:DeleteObjectVersion" in deny["Action"]
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


def test_make_up_expires_the_stacks_staged_parquet_and_results_not_its_versioned_raw_files(stack_env):
    s3 = boto3.client("s3", endpoint_url=stack_env["AWS_ENDPOINT_URL"])
    rules = s3.get_bucket_lifecycle_configuration(Bucket=stack_env["ETL_STAGING_BUCKET"])["Rules"]
    assert {(r["Filter"]["Prefix"], r["Expiration"]["Days"], r["Status"]) for r in rules} == {
        (stack_env["ETL_STAGING_PREFIX"], 14, "Enabled"),
        ("results/", 14, "Enabled"),
    }
    with pytest.raises(botocore.exceptions.ClientError, match="NoSuchLifecycleConfiguration"):
        s3.get_bucket_lifecycle_configuration(Bucket=stack_env["ETL_RAW_BUCKET"])
    assert s3.get_bucket_versioning(Bucket=stack_env["ETL_RAW_BUCKET"])["Status"] == "Enabled"
