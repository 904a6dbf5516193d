"""Create or update the pipeline's AWS resources, and print the IAM policies its roles need.

    python -m provisioning.aws ensure      # buckets, staging lifecycle, raw versioning + bucket policy,
                                          # queue + DLQ (redrive), S3 notification
    python -m provisioning.aws policies    # least-privilege policy documents for each role, `ensure`'s own too,
                                          # and the raw bucket's policy

Settings come from the environment: ProvisioningSettings (docs/configuration.md; no warehouse). Credentials come from the caller's AWS profile or role: none are read or written here.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import boto3

from berlin_rentals.config import ProvisioningSettings
from provisioning.aws_resources import EventResources, ensure_event_resources, raw_bucket_policy


def _account_and_partition(settings: ProvisioningSettings) -> tuple[str, str]:
    if settings.aws_account_id:
        return settings.aws_account_id, "aws"
    arn = _caller_arn(settings.aws_region, settings.aws_endpoint_url)
    return arn.split(":")[4], arn.split(":")[1]


def _caller_arn(region: str, endpoint_url: str | None) -> str:
    return boto3.client("sts", endpoint_url=endpoint_url, region_name=region).get_caller_identity()["Arn"]


def principal_arn(caller_arn: str) -> str:
    """What a bucket policy's aws:PrincipalArn sees of a caller: an assumed role's session is its role."""
    parts = caller_arn.split(":")
    if parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{parts[5].split('/')[1]}"
    return caller_arn


def raw_admin_arn(settings: ProvisioningSettings) -> str:
    """ETL_RAW_ADMIN_ARN, else whoever runs `ensure` (who must be able to run it again). A role with a
    path needs the setting: its session ARN does not show the path."""
    return settings.raw_admin_arn or principal_arn(_caller_arn(settings.aws_region, settings.aws_endpoint_url))


def staging_expire_prefixes(settings: ProvisioningSettings) -> list[str]:
    """What the staging bucket's lifecycle expires: staged Parquet and stored results."""
    return list(dict.fromkeys([settings.staging_prefix, settings.results_prefix]))


def ensure(settings: ProvisioningSettings, visibility_timeout: int = 300) -> dict[str, str]:
    wanted = EventResources(
        raw_bucket=settings.raw_bucket,
        raw_prefix=settings.raw_prefix,
        staging_bucket=settings.staging_bucket,
        queue_name=settings.queue_name,
        dlq_name=settings.dlq_name,
        visibility_timeout=visibility_timeout,
        max_receive_count=settings.queue_max_receives,
        staging_expire_prefixes=staging_expire_prefixes(settings),
        staging_retention_days=settings.staging_retention_days,
        raw_admin_arn=raw_admin_arn(settings),
    )
    return ensure_event_resources(wanted, endpoint_url=settings.aws_endpoint_url, region=settings.aws_region)


def policies(
    settings: ProvisioningSettings, account: str, partition: str = "aws", admin_arn: str | None = None
) -> dict[str, dict[str, Any]]:
    """Least privilege: raw prefix read-only, staging prefix read/write, the queue's receive/delete.

    No role may delete or write a raw object: the staging bucket's lifecycle rule expires staged Parquet
    and results, and the raw bucket is never deleted from. `raw-bucket-policy` is the raw bucket's own
    policy (`ensure` applies it): it denies deleting versions or switching versioning off to everyone but
    `admin_arn` (ETL_RAW_ADMIN_ARN; the account's root if neither is given)."""
    raw = f"arn:{partition}:s3:::{settings.raw_bucket}"
    staging = f"arn:{partition}:s3:::{settings.staging_bucket}"
    queue = f"arn:{partition}:sqs:{settings.aws_region}:{account}:{settings.queue_name}"
    dlq = f"arn:{partition}:sqs:{settings.aws_region}:{account}:{settings.dlq_name}"

    def listing(bucket: str, prefix: str) -> dict[str, Any]:
        return {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket,
            "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}},
        }

    # Reading raw versions is all anyone but the admin may do with the raw zone.
    read_raw = [
        {
            "Sid": "ReadRawBatches",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": f"{raw}/{settings.raw_prefix}*",
        },
        {"Sid": "ListRawBatches", **listing(raw, settings.raw_prefix)},
    ]

    return {
        # The flows (ingest-file, catch-up) on the worker's ECS task role.
        "worker-task-role": {
            "Version": "2012-10-17",
            "Statement": [
                *read_raw,
                {
                    "Sid": "WriteStaging",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject"],
                    "Resource": f"{staging}/{settings.staging_prefix}*",
                },
                {"Sid": "ListStaging", **listing(staging, settings.staging_prefix)},
                {
                    # The ETag cache's results (Prefect's S3Bucket block ETL_RESULTS_BLOCK): pointers only.
                    "Sid": "CacheResults",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject"],
                    "Resource": f"{staging}/{settings.results_prefix}*",
                },
            ],
        },
        # The SQS bridge's ECS task role: read the queue, confirm objects, dead-letter what it cannot parse.
        "bridge-task-role": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ConsumeEvents",
                    "Effect": "Allow",
                    "Action": [
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:GetQueueUrl",
                        "sqs:GetQueueAttributes",
                        "sqs:ChangeMessageVisibility",
                    ],
                    "Resource": queue,
                },
                {
                    "Sid": "DeadLetter",
                    "Effect": "Allow",
                    "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"],
                    "Resource": dlq,
                },
                {
                    "Sid": "ConfirmObjects",
                    "Effect": "Allow",
                    # HEAD needs GetObject; of the event's version (VersionId), GetObjectVersion
                    "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                    "Resource": f"{raw}/{settings.raw_prefix}*",
                },
                # Without it S3 answers a HEAD of a deleted object 403, not 404: an object gone would
                # look like a permission error and be kept for retry instead of ignored.
                {"Sid": "ListRawBatches", **listing(raw, settings.raw_prefix)},
            ],
        },
        # Whoever runs `python -m bridge.sqs_bridge --replay-dlq` (an operator, or a one-off task).
        "dlq-replay": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ReadDeadLetters",
                    "Effect": "Allow",
                    "Action": [
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:ChangeMessageVisibility",
                        "sqs:GetQueueUrl",
                    ],
                    "Resource": dlq,
                },
                {
                    "Sid": "Requeue",
                    "Effect": "Allow",
                    "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"],
                    "Resource": queue,
                },
            ],
        },
        # Whoever runs `python -m provisioning.aws ensure`: exactly the calls it makes, on these resources.
        "provisioner": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Buckets",
                    "Effect": "Allow",
                    "Action": ["s3:CreateBucket", "s3:ListBucket"],  # HeadBucket needs ListBucket
                    "Resource": [raw, staging],
                },
                {
                    "Sid": "ExpireStaging",
                    "Effect": "Allow",
                    "Action": ["s3:PutLifecycleConfiguration"],
                    "Resource": staging,
                },
                {
                    "Sid": "NotifyQueue",
                    "Effect": "Allow",
                    "Action": ["s3:PutBucketNotification"],
                    "Resource": raw,
                },
                {
                    "Sid": "KeepRawVersions",
                    "Effect": "Allow",
                    "Action": ["s3:GetBucketVersioning", "s3:PutBucketVersioning", "s3:PutBucketPolicy"],
                    "Resource": raw,
                },
                {
                    "Sid": "Queues",
                    "Effect": "Allow",
                    "Action": [
                        "sqs:CreateQueue",
                        "sqs:GetQueueUrl",
                        "sqs:GetQueueAttributes",
                        "sqs:SetQueueAttributes",
                    ],
                    "Resource": [queue, dlq],
                },
            ],
        },
        # A DWH engineer's (or role's) read of the raw zone: `python -m berlin_rentals.raw_record` gets
        # the exact version a warehouse row points at; the listing makes a missing version 404, not 403.
        "dwh-raw-reader": {"Version": "2012-10-17", "Statement": read_raw},
        # The raw bucket's resource policy, not a role's: applied by `ensure`.
        "raw-bucket-policy": raw_bucket_policy(raw, admin_arn or f"arn:{partition}:iam::{account}:root"),
        # The role attached to the Redshift cluster (REDSHIFT_IAM_ROLE_ARN): COPY reads staged Parquet only.
        "redshift-copy-role": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ReadStagedParquet",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": f"{staging}/{settings.staging_prefix}*",
                },
                {"Sid": "ListStagedParquet", **listing(staging, settings.staging_prefix)},
            ],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["ensure", "policies"])
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=300,
        help="seconds a received message stays hidden (longer than the bridge needs per message)",
    )
    args = parser.parse_args()
    settings = ProvisioningSettings.from_env()
    if args.command == "ensure":
        print(json.dumps(ensure(settings, args.visibility_timeout), indent=2))
    else:
        account, partition = _account_and_partition(settings)
        admin = settings.raw_admin_arn
        if admin is None and not settings.aws_account_id:
            admin = raw_admin_arn(settings)
        print(json.dumps(policies(settings, account, partition, admin), indent=2))


if __name__ == "__main__":
    main()
