"""`python -m provisioning.aws`: least-privilege policies, and resources against moto in this process (against the
moto server of the stack: tests/stack/test_aws.py)."""

from __future__ import annotations

import json

import boto3
import botocore.exceptions
import pytest

from berlin_rentals.config import ProvisioningSettings
from provisioning.aws import ensure, policies, principal_arn


def test_policies_grant_read_on_raw_read_write_on_staging_and_nothing_more():
    settings = ProvisioningSettings.from_env({"ETL_RAW_BUCKET": "raw-b", "ETL_STAGING_BUCKET": "stage-b"})
    docs = policies(settings, "123456789012")
    worker = docs["worker-task-role"]["Statement"]
    writes = [s for s in worker if "s3:PutObject" in s["Action"]]
    assert [w["Resource"] for w in writes] == ["arn:aws:s3:::stage-b/clean/*", "arn:aws:s3:::stage-b/results/*"]
    reads = {s["Resource"] for s in worker if "s3:GetObject" in s["Action"]}
    assert reads == {"arn:aws:s3:::raw-b/raw/*", "arn:aws:s3:::stage-b/clean/*", "arn:aws:s3:::stage-b/results/*"}
    assert not any("*" == s["Resource"] or s["Action"] == "*" for doc in docs.values() for s in doc["Statement"])
    redshift = docs["redshift-copy-role"]["Statement"]
    assert {a for s in redshift for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])} == {
        "s3:GetObject",
        "s3:ListBucket",
    }
    bridge_actions = {a for s in docs["bridge-task-role"]["Statement"] for a in s["Action"]}
    assert "sqs:DeleteMessage" in bridge_actions and not any(a.startswith("s3:Put") for a in bridge_actions)


def test_the_retention_is_a_setting_and_a_second_ensure_replaces_the_rules(in_process_aws):
    env = {"ETL_STAGING_PREFIX": "parquet", "ETL_RESULTS_PREFIX": "prefect-results"}
    ensure(ProvisioningSettings.from_env({**env, "ETL_STAGING_RETENTION_DAYS": "3"}))
    ensure(ProvisioningSettings.from_env({**env, "ETL_STAGING_RETENTION_DAYS": "7"}))
    s3 = boto3.client("s3", region_name="eu-central-1")
    rules = s3.get_bucket_lifecycle_configuration(Bucket="rentals-staging")["Rules"]
    assert sorted((r["Filter"]["Prefix"], r["Expiration"]["Days"]) for r in rules) == [
        ("parquet/", 7),
        ("prefect-results/", 7),
    ]
    assert all(r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1 for r in rules)


def test_only_the_provisioner_may_set_the_lifecycle_and_no_role_may_delete():
    settings = ProvisioningSettings.from_env({"ETL_STAGING_BUCKET": "stage-b"})
    docs = policies(settings, "123456789012")

    def grants(doc: str, action: str) -> list:
        return [s["Resource"] for s in docs[doc]["Statement"] if action in s["Action"]]

    assert grants("provisioner", "s3:PutLifecycleConfiguration") == ["arn:aws:s3:::stage-b"]
    for doc in docs:
        actions = {
            a
            for s in docs[doc]["Statement"]
            if s["Effect"] == "Allow"
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        }
        assert not {a for a in actions if a.startswith("s3:Delete")}, doc
        if doc != "provisioner":
            assert not {a for a in actions if "Lifecycle" in a or a.startswith("s3:PutBucket")}, doc
    # a deleted object answers the bridge's HEAD with 404 (ignored), not 403 (kept for retry)
    assert grants("bridge-task-role", "s3:ListBucket") == ["arn:aws:s3:::rentals-raw"]
    assert grants("dlq-replay", "sqs:SendMessage") == ["arn:aws:sqs:eu-central-1:123456789012:rentals-raw-events"]


def _allowed(statement: dict) -> set[str]:
    return set([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])


def _on_raw(statement: dict, raw: str) -> bool:
    resources = [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
    return any(r == raw or r.startswith(f"{raw}/") for r in resources)


def test_no_role_may_write_delete_or_unversion_a_raw_object():
    settings = ProvisioningSettings.from_env({"ETL_RAW_BUCKET": "raw-b"})
    docs = policies(settings, "123456789012", admin_arn="arn:aws:iam::123456789012:role/raw-admin")
    raw = "arn:aws:s3:::raw-b"
    reads = {"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"}
    roles = {name: doc for name, doc in docs.items() if name != "raw-bucket-policy"}
    assert {"worker-task-role", "bridge-task-role", "dwh-raw-reader", "provisioner"} <= set(roles)
    for name, doc in roles.items():
        assert all(s["Effect"] == "Allow" for s in doc["Statement"]), name
        on_raw = set().union(*[_allowed(s) for s in doc["Statement"] if _on_raw(s, raw)])
        if name == "provisioner":
            # bucket settings only, never an object: versioning on, the policy, the notification
            assert on_raw == {
                "s3:CreateBucket",
                "s3:ListBucket",
                "s3:PutBucketNotification",
                "s3:GetBucketVersioning",
                "s3:PutBucketVersioning",
                "s3:PutBucketPolicy",
            }
        else:
            assert on_raw <= reads, (name, on_raw - reads)
    for name in ("worker-task-role", "bridge-task-role", "dwh-raw-reader"):
        raw_objects = [s for s in roles[name]["Statement"] if s["Resource"] == f"{raw}/raw/*"]
        assert [_allowed(s) for s in raw_objects] == [{"s3:GetObject", "s3:GetObjectVersion"}], name


def test_the_raw_bucket_policy_denies_losing_a_version_to_all_but_the_admin():
    settings = ProvisioningSettings.from_env({"ETL_RAW_BUCKET": "raw-b"})
    admin = "arn:aws:iam::123456789012:role/raw-admin"
    (statement,) = policies(settings, "123456789012", admin_arn=admin)["raw-bucket-policy"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
    assert {"s3:DeleteObjectVersion", "s3:PutBucketVersioning", "s3:PutLifecycleConfiguration"} <= _allowed(statement)
    assert {"s3:PutBucketPolicy", "s3:DeleteBucketPolicy"} <= _allowed(statement)  # nor lift the Deny itself
    assert sorted(statement["Resource"]) == ["arn:aws:s3:::raw-b", "arn:aws:s3:::raw-b/*"]
    assert statement["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": admin}}
    # without a named admin, the account's root (which S3 never lets a policy lock out anyway)
    (default,) = policies(settings, "123456789012")["raw-bucket-policy"]["Statement"]
    assert default["Condition"]["ArnNotLike"]["aws:PrincipalArn"] == "arn:aws:iam::123456789012:root"


def test_an_assumed_roles_session_is_its_role_in_the_bucket_policy():
    assert principal_arn("arn:aws:sts::123456789012:assumed-role/ops-admin/jane") == (
        "arn:aws:iam::123456789012:role/ops-admin"
    )
    assert principal_arn("arn:aws-cn:sts::123456789012:assumed-role/a/b") == "arn:aws-cn:iam::123456789012:role/a"
    assert principal_arn("arn:aws:iam::123456789012:user/jane") == "arn:aws:iam::123456789012:user/jane"


def test_ensure_turns_versioning_on_for_an_existing_raw_bucket_and_keeps_its_objects(in_process_aws):
    s3 = boto3.client("s3", region_name="eu-central-1")
    s3.create_bucket(Bucket="rentals-raw", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_object(Bucket="rentals-raw", Key="raw/old.zip", Body=b"before versioning")
    assert "Status" not in s3.get_bucket_versioning(Bucket="rentals-raw")
    settings = ProvisioningSettings.from_env({})
    ensure(settings)
    ensure(settings)
    assert s3.get_bucket_versioning(Bucket="rentals-raw")["Status"] == "Enabled"
    assert "Status" not in s3.get_bucket_versioning(Bucket="rentals-staging")  # staged Parquet is disposable
    assert s3.get_object(Bucket="rentals-raw", Key="raw/old.zip")["Body"].read() == b"before versioning"
    applied = json.loads(s3.get_bucket_policy(Bucket="rentals-raw")["Policy"])
    caller = boto3.client("sts", region_name="eu-central-1").get_caller_identity()["Arn"]
    assert applied == policies(settings, "123456789012", admin_arn=caller)["raw-bucket-policy"]
    with pytest.raises(botocore.exceptions.ClientError, match="NoSuchLifecycleConfiguration"):
        s3.get_bucket_lifecycle_configuration(Bucket="rentals-raw")
    first = s3.put_object(Bucket="rentals-raw", Key="raw/old.zip", Body=b"v1")["VersionId"]
    s3.put_object(Bucket="rentals-raw", Key="raw/old.zip", Body=b"v2")
    assert s3.get_object(Bucket="rentals-raw", Key="raw/old.zip", VersionId=first)["Body"].read() == b"v1"
