"""Create or update the event path's AWS resources, idempotently: buckets, queue, DLQ, S3 notification,
the staging bucket's lifecycle (staged Parquet and stored results expire; the raw bucket never does),
and the raw bucket's versioning and policy (no version of a raw object is ever lost).

Used by `make up` against the moto server; the same calls work against AWS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import boto3
import botocore.exceptions


def _ensure_bucket(s3, bucket: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError:
        config = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=bucket, **config)


def _ensure_queue(sqs, name: str, attributes: dict[str, str]) -> str:
    # Look up first: CreateQueue refuses an existing queue whose attributes differ from the request.
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    if attributes:
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def lifecycle_rules(prefixes: list[str], days: int) -> list[dict]:
    """One rule per prefix: objects expire `days` after they were written, as do older versions should
    the bucket ever be versioned, and abandoned multipart uploads after a day."""
    if days < 1:
        raise ValueError(f"retention of {days} days: S3 expires objects after 1 day at the earliest")
    return [
        {
            "ID": f"expire-{prefix.rstrip('/').replace('/', '-') or 'all'}-after-{days}-days",
            "Filter": {"Prefix": prefix},
            "Status": "Enabled",
            "Expiration": {"Days": days},
            "NoncurrentVersionExpiration": {"NoncurrentDays": days},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
        for prefix in prefixes
    ]


# What only the raw bucket's admin may do: each of these can lose a raw version for good (delete it,
# stop keeping versions, expire them, or lift this very protection).
RAW_ADMIN_ONLY_ACTIONS = [
    "s3:DeleteObjectVersion",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:DeleteBucket",
]


def raw_bucket_policy(raw_bucket_arn: str, admin_arn: str) -> dict:
    """The raw bucket's own policy: a Deny beats any Allow an identity policy grants, so no pipeline role,
    operator or misconfigured policy can delete a version or switch versioning off; only `admin_arn`."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "RawVersionsAreKept",
                "Effect": "Deny",
                "Principal": "*",
                "Action": RAW_ADMIN_ONLY_ACTIONS,
                "Resource": [raw_bucket_arn, f"{raw_bucket_arn}/*"],
                "Condition": {"ArnNotLike": {"aws:PrincipalArn": admin_arn}},
            }
        ],
    }


def _ensure_versioning(s3, bucket: str) -> None:
    """Versioning on: an unversioned or suspended bucket gets it; an enabled one is left as it is."""
    if s3.get_bucket_versioning(Bucket=bucket).get("Status") != "Enabled":
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def _queue_arn(sqs, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


@dataclass(frozen=True)
class EventResources:
    """What `ensure_event_resources` creates or updates: the buckets, the queue and its DLQ, the notification.

    `staging_expire_prefixes`: the staging bucket's prefixes to expire (staged Parquet, stored results);
    None leaves its lifecycle alone. The raw bucket gets no lifecycle rule: it is the system of record,
    versioned, and with `raw_admin_arn` its policy (raw_bucket_policy) lets no one else delete a version."""

    raw_bucket: str
    raw_prefix: str
    staging_bucket: str
    queue_name: str
    dlq_name: str
    visibility_timeout: int = 60
    max_receive_count: int = 20
    staging_expire_prefixes: list[str] | None = None
    staging_retention_days: int = 14
    raw_admin_arn: str | None = None


def ensure_event_resources(wanted: EventResources, *, endpoint_url: str | None, region: str) -> dict[str, str]:
    """Create what is missing and set what is there to `wanted` (idempotent): the queues' URLs and ARNs."""
    raw_bucket, staging_bucket, raw_admin_arn = wanted.raw_bucket, wanted.staging_bucket, wanted.raw_admin_arn
    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
    sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name=region)
    for bucket in (raw_bucket, staging_bucket):
        _ensure_bucket(s3, bucket, region)
    _ensure_versioning(s3, raw_bucket)
    if raw_admin_arn:
        # Replaces the bucket's whole policy: this statement is all it should have. The admin's partition
        # (aws, aws-cn, aws-us-gov) is the bucket's.
        partition = raw_admin_arn.split(":")[1]
        s3.put_bucket_policy(
            Bucket=raw_bucket, Policy=json.dumps(raw_bucket_policy(f"arn:{partition}:s3:::{raw_bucket}", raw_admin_arn))
        )
    if wanted.staging_expire_prefixes:
        # Replaces the bucket's whole lifecycle configuration: these rules are all it should have.
        s3.put_bucket_lifecycle_configuration(
            Bucket=staging_bucket,
            LifecycleConfiguration={
                "Rules": lifecycle_rules(wanted.staging_expire_prefixes, wanted.staging_retention_days)
            },
        )

    # 14 days (SQS's maximum) on both: a message waits out a long Prefect outage on the queue, and SQS
    # counts a dead-lettered message's age from when it was first sent, so the DLQ needs as long.
    retention = {"MessageRetentionPeriod": "1209600"}
    dlq_url = _ensure_queue(sqs, wanted.dlq_name, retention)
    dlq_arn = _queue_arn(sqs, dlq_url)
    queue_url = _ensure_queue(sqs, wanted.queue_name, retention)
    queue_arn = _queue_arn(sqs, queue_url)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowRawBucketNotifications",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{raw_bucket}"}},
            }
        ],
    }
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            # Longer than one ingest takes to hand over, so a message is not redelivered while in flight.
            "VisibilityTimeout": str(wanted.visibility_timeout),
            # A net for messages that fail while the Prefect API answers (rejected, or crashing the
            # bridge): an outage costs a message one or two receives, as the bridge stops receiving.
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(wanted.max_receive_count)}
            ),
            "Policy": json.dumps(policy),
        },
    )
    s3.put_bucket_notification_configuration(
        Bucket=raw_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "raw-objects-to-ingest-queue",
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": wanted.raw_prefix}]}},
                }
            ]
        },
    )
    return {"queue_url": queue_url, "queue_arn": queue_arn, "dlq_url": dlq_url, "dlq_arn": dlq_arn}
