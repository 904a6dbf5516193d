"""The settings of each component other than the pipeline (pipeline.py): the SQS bridge, provisioning, the
deploy-time tools, the raw-record tool, the sample batch. Each reads only what it uses; none of them needs
the warehouse (raw_record only to look a listing up).

A variable two components read is declared once, as a function below, and each class that reads it lists
it: docs/configuration.md says which component reads what from these classes.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, ClassVar

from berlin_rentals.archive import DEFAULT_MAX_MEMBERS
from berlin_rentals.config.env import (
    ConfigError,
    EnvSettings,
    block,
    bucket,
    identifier,
    integer,
    matching,
    positive,
    prefix,
    ratio,
    text,
    var,
)

# --- declared once, read by more than one component ------------------------------------------------------


# `postgresql+psycopg://…` or `redshift+redshift_connector://…`.
def warehouse_url(default: Any = MISSING) -> Any:
    return var("WAREHOUSE_URL", text(), default)


def warehouse_schema() -> Any:
    return var("WAREHOUSE_SCHEMA", identifier(), "berlin_rentals")


# Staged Parquet and stored results (the staging bucket's two prefixes) expire after this many days: the
# lifecycle rule provisioning writes, and the cached transform-stage result's expiration in the pipeline.
def staging_retention_days() -> Any:
    return var("ETL_STAGING_RETENTION_DAYS", integer(1), 14)


# The S3Bucket block (on the staging bucket, under results_prefix) the transform-stage step persists its
# result to, as `s3-bucket/<block name>`; `python -m deployments.results` creates it.
def results_block() -> Any:
    return var("ETL_RESULTS_BLOCK", block("s3-bucket"), "s3-bucket/berlin-rentals-results")


# Where stored results go in the staging bucket (expired with the staged Parquet).
def results_prefix() -> Any:
    return var("ETL_RESULTS_PREFIX", prefix(), "results/")


# A file whose rejected share of lines is above this emits an alert (the pipeline emits it, the automation
# deployments/automations.py makes names it); the file is still loaded.
def reject_alert_ratio() -> Any:
    return var("ETL_REJECT_ALERT_RATIO", ratio(), 0.05)


# A zip member that inflates past this is refused: protects the worker from zip bombs.
def max_member_bytes() -> Any:
    return var("ETL_MAX_MEMBER_BYTES", integer(1), 4 * 1024**3)


# A zip of more members than this (or a central directory longer than 512 bytes a member) is refused
# before its directory is read; a real batch holds one.
def max_members() -> Any:
    return var("ETL_MAX_MEMBERS", integer(1), DEFAULT_MAX_MEMBERS)


# A single line past this is rejected without being decoded.
def max_line_bytes() -> Any:
    return var("ETL_MAX_LINE_BYTES", integer(1), 64 * 1024**2)


# --- the common parts ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AwsSettings(EnvSettings):
    """Where AWS is: what every boto3 client of this code is made with (berlin_rentals/s3.py)."""

    # The moto server locally; unset: AWS itself.
    aws_endpoint_url: str | None = var("AWS_ENDPOINT_URL", text(), None, doc_default="unset: AWS")
    aws_region: str = var("AWS_DEFAULT_REGION", text(), "eu-central-1", also=("AWS_REGION",))
    # Attempts per S3/SQS call (botocore's standard retries; botocore's own variable) before the step counts
    # one failed try: the fault tests set 1 so that the task's retries are the only ones.
    aws_max_attempts: int = var("AWS_MAX_ATTEMPTS", integer(1), 4)


@dataclass(frozen=True, kw_only=True)
class RawZone(EnvSettings):
    """The raw bucket and the prefix the pipeline owns in it (keys outside it are refused)."""

    raw_bucket: str = var("ETL_RAW_BUCKET", bucket(), "rentals-raw")
    raw_prefix: str = var("ETL_RAW_PREFIX", prefix(), "raw/")


@dataclass(frozen=True, kw_only=True)
class StagingBucket(EnvSettings):
    """The staging bucket: staged Parquet, stored results, the market report's charts."""

    staging_bucket: str = var("ETL_STAGING_BUCKET", bucket(), "rentals-staging")


@dataclass(frozen=True, kw_only=True)
class StagingZone(StagingBucket):
    """The staging bucket and the prefix of the staged Parquet."""

    staging_prefix: str = var("ETL_STAGING_PREFIX", prefix(), "clean/")


@dataclass(frozen=True, kw_only=True)
class Queues(EnvSettings):
    """The queue S3 notifies and its dead-letter queue."""

    queue_name: str = var("ETL_QUEUE_NAME", text(), "rentals-raw-events")
    dlq_name: str = var("ETL_DLQ_NAME", text(), "rentals-raw-events-dlq")


# --- the components --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BridgeSettings(AwsSettings, RawZone, Queues):
    """bridge/sqs_bridge.py: SQS messages in, Prefect events out."""

    component: ClassVar[str] = "bridge"
    readers: ClassVar[str] = "bridge/sqs_bridge.py"

    # How long the bridge hides a message the Prefect API did not take: first delay, doubling per receive up
    # to the cap (the queue's redrive moves it to the DLQ after ETL_QUEUE_MAX_RECEIVES receives).
    bridge_backoff_seconds: float = var("ETL_BRIDGE_BACKOFF_SECONDS", positive(), 30.0)
    bridge_backoff_max_seconds: float = var("ETL_BRIDGE_BACKOFF_MAX_SECONDS", positive(), 900.0)
    # The SQS long-poll wait of one receive (SQS allows 1 to 20); also bounds how long SIGTERM takes.
    bridge_wait_seconds: int = var("ETL_BRIDGE_WAIT_SECONDS", integer(1, 20), 20)


@dataclass(frozen=True, kw_only=True)
class ProvisioningSettings(AwsSettings, RawZone, StagingZone, Queues):
    """provisioning/aws.py (and `make up`, which runs its `ensure`): buckets, queues, policies."""

    component: ClassVar[str] = "provisioning"
    readers: ClassVar[str] = "provisioning/aws.py"

    staging_retention_days: int = staging_retention_days()
    results_prefix: str = results_prefix()
    # The queue's redrive: receives before SQS moves a message to the DLQ (SQS allows 1 to 1000).
    queue_max_receives: int = var("ETL_QUEUE_MAX_RECEIVES", integer(1, 1000), 20)
    # The one principal the raw bucket's policy lets delete versions, suspend versioning or change the
    # policy (provisioning/aws_resources.py); unset: whoever runs `python -m provisioning.aws ensure`.
    raw_admin_arn: str | None = var("ETL_RAW_ADMIN_ARN", text(), None, doc_default="unset: the caller")
    # The account the policies name (`policies`); unset: asked of STS with the caller's credentials.
    aws_account_id: str | None = var(
        "AWS_ACCOUNT_ID", matching(re.compile(r"\d{12}"), "a 12-digit AWS account id"), None, doc_default="unset: STS"
    )


@dataclass(frozen=True, kw_only=True)
class AlertSettings(RawZone):
    """deployments/automations.py: the alerts, as Prefect automations on the raw prefix's events."""

    component: ClassVar[str] = "alerts"
    readers: ClassVar[str] = "deployments/automations.py"

    # The Prefect notification block the alerts go to, as `<block type slug>/<block name>` (Block.load's
    # form: custom-webhook/… locally, slack-webhook/… in production).
    notification_block: str = var("ETL_NOTIFICATION_BLOCK", block(), "custom-webhook/berlin-rentals-alerts")
    # No `aws.s3.object.created` event under the raw prefix for this long: the missing-hour alert (65 min:
    # hourly batches plus a few minutes' slack). Prefect's floor for a proactive trigger is 10 s.
    missing_hour_seconds: int = var("ETL_MISSING_HOUR_SECONDS", integer(10), 3900)
    reject_alert_ratio: float = reject_alert_ratio()


@dataclass(frozen=True, kw_only=True)
class LoadLimitSettings(EnvSettings):
    """deployments/concurrency.py: the Prefect global concurrency limit `warehouse-load`."""

    component: ClassVar[str] = "load limit"
    readers: ClassVar[str] = "deployments/concurrency.py"

    # Its size: load transactions at once.
    load_concurrency: int = var("ETL_LOAD_CONCURRENCY", integer(1), 2)


@dataclass(frozen=True, kw_only=True)
class ResultsBlockSettings(AwsSettings, StagingBucket):
    """deployments/results.py: the S3Bucket block the transform-stage step stores its result in."""

    component: ClassVar[str] = "results block"
    readers: ClassVar[str] = "deployments/results.py"

    results_block: str = results_block()
    results_prefix: str = results_prefix()


@dataclass(frozen=True, kw_only=True)
class RawRecordSettings(AwsSettings, RawZone):
    """berlin_rentals/raw_record.py: one raw line back from the raw zone, by key or by listing."""

    component: ClassVar[str] = "raw record"
    readers: ClassVar[str] = "berlin_rentals/raw_record.py"

    # Needed only to look a listing up (`python -m berlin_rentals.raw_record <listing id>`).
    warehouse_url: str | None = warehouse_url(None)
    warehouse_schema: str = warehouse_schema()
    max_member_bytes: int = max_member_bytes()
    max_members: int = max_members()
    max_line_bytes: int = max_line_bytes()

    def listing_url(self) -> str:
        if not self.warehouse_url:
            raise ConfigError("WAREHOUSE_URL is not set: a listing id is looked up in the warehouse (or give --key …)")
        return self.warehouse_url


# The sample batch beside the clone (../shared/data/), as the tests, the demo and the benchmarks find it.
DEFAULT_SAMPLE_ZIP = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "immobilienscout24_berlin_20190113_15.zip"
)


@dataclass(frozen=True, kw_only=True)
class SampleSettings(EnvSettings):
    """berlin_rentals/synthetic.py: the real sample batch that the demo, the tests and the benchmarks derive
    their batches from."""

    component: ClassVar[str] = "samples"
    readers: ClassVar[str] = "berlin_rentals/synthetic.py"

    sample_zip: str | None = var(
        "ETL_SAMPLE_ZIP", text(), None, doc_default="../shared/data/immobilienscout24_berlin_20190113_15.zip"
    )

    def path(self) -> Path:
        return Path(self.sample_zip) if self.sample_zip else DEFAULT_SAMPLE_ZIP


@dataclass(frozen=True, kw_only=True)
class DeployFileSettings(RawZone):
    """prefect.yaml, as `prefect deploy` fills in its `{{ $NAME }}` placeholders (no Python reads these:
    declared here so that the reference lists them; tests/unit/test_config_reference.py checks the file)."""

    component: ClassVar[str] = "prefect.yaml"
    readers: ClassVar[str] = "prefect.yaml (`prefect deploy`)"

    # The checkout the process worker runs the flows from (`make up` sets it to the clone).
    project_dir: str | None = var("ETL_PROJECT_DIR", text(), None, doc_default="required by `prefect deploy`")
    # The work pool every deployment runs on (`make up`: local-process).
    work_pool: str | None = var("ETL_WORK_POOL", text(), None, doc_default="required by `prefect deploy`")
