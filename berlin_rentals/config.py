"""The one place for configuration: every setting comes from the environment.

`make up` writes the local stack's values to `.local/env`; in production the worker's
task definition sets them (credentials come from the IAM role, never from here).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

# A schema name is the one piece of text pasted into SQL: a plain lower-case identifier, nothing else.
PLAIN_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class ConfigError(ValueError):
    """A setting is missing or malformed."""


def _prefix(value: str) -> str:
    value = value.strip().lstrip("/")
    return value if not value or value.endswith("/") else value + "/"


def _at_least_one(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise ConfigError(f"{name}={raw!r} must be at least 1")
    return value


def _ratio(env: dict[str, str], name: str, default: float | None) -> float | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number between 0 and 1") from None
    if not 0 <= value <= 1:
        raise ConfigError(f"{name}={raw!r} is not a share between 0 and 1 (0.05 is 5%)")
    return value


@dataclass(frozen=True)
class Settings:
    warehouse_url: str
    warehouse_schema: str = "berlin_rentals"
    # The two audiences (berlin_rentals/warehouse/access.py): the DWH role reads warehouse_schema as it is,
    # the BI role only the views of warehouse_bi_schema, with the contact persons pseudonymised. Unset,
    # the BI schema is the warehouse schema's name + "_bi": two warehouses never share (and repoint) one.
    warehouse_bi_schema: str = "berlin_rentals_bi"
    warehouse_dwh_role: str = "berlin_rentals_dwh"
    warehouse_bi_role: str = "berlin_rentals_bi"
    # Connections as each role (the demo and the market report read as BI); unused by the load.
    warehouse_dwh_url: str | None = field(default=None, repr=False)
    warehouse_bi_url: str | None = field(default=None, repr=False)
    raw_bucket: str = "rentals-raw"
    raw_prefix: str = "raw/"
    staging_bucket: str = "rentals-staging"
    staging_prefix: str = "clean/"
    queue_name: str = "rentals-raw-events"
    dlq_name: str = "rentals-raw-events-dlq"
    aws_endpoint_url: str | None = None
    aws_region: str = "eu-central-1"
    # The one principal the raw bucket's policy lets delete versions, suspend versioning or change the
    # policy (provisioning/aws_resources.py); unset: whoever runs `python -m provisioning.aws ensure`.
    raw_admin_arn: str | None = None
    # Redshift COPY reads the staged Parquet with this role; unused on PostgreSQL.
    redshift_iam_role_arn: str | None = None
    # A zip member that inflates past this is refused: protects the worker from zip bombs.
    max_member_bytes: int = 4 * 1024**3
    # A single line past this is rejected without being decoded.
    max_line_bytes: int = 64 * 1024**2
    # All members of a file together may inflate to this many times the object's size (past a 16 MiB
    # floor; real batches compress about 9:1) and to max_file_bytes at most: zip bombs of one long line.
    max_inflate_ratio: float = 100.0
    max_file_bytes: int = 4 * 1024**3
    # Raw text kept for one file's rejected lines, in all; past it they keep their row without the text.
    max_rejected_raw_bytes: int = 16 * 1024**2
    # After this many failed attempts a file is parked until someone releases it.
    max_attempts: int = 3
    # An attempt still unfinished after this long is taken for dead (its process killed) and counts; a
    # younger one may be a run still working on the same version, which must not park it.
    attempt_stale_seconds: int = 1800
    # Contact persons' names, e-mail and phone numbers replaced by a salted hash (see masking.py).
    mask_personal_data: bool = False
    # The secret of that hash; whenever it is set (masking on or off) dim_agent also gets pseudonyms.
    mask_salt: str | None = field(default=None, repr=False)
    # Staged Parquet and stored results (the staging bucket's two prefixes) expire after this many days.
    results_prefix: str = "results/"
    staging_retention_days: int = 14
    # The S3Bucket block (on the staging bucket, under results_prefix) the transform-stage step persists
    # its result to, as `s3-bucket/<block name>`; `python -m deployments.results` creates it.
    results_block: str = "s3-bucket/berlin-rentals-results"
    # The queue's redrive: receives before SQS moves a message to the DLQ (see bridge/sqs_bridge.py).
    queue_max_receives: int = 20
    # The bridge's back-off when the Prefect API fails: first delay, doubling up to the cap.
    bridge_backoff_seconds: float = 30.0
    bridge_backoff_max_seconds: float = 900.0
    # Size of the Prefect global concurrency limit `warehouse-load`: load transactions at once.
    load_concurrency: int = 2
    # Alerts (deployments/automations.py): the Prefect notification block they go to, as `<block type
    # slug>/<block name>` (Block.load's form: custom-webhook/… locally, slack-webhook/… in production).
    notification_block: str = "custom-webhook/berlin-rentals-alerts"
    # No `aws.s3.object.created` event under the raw prefix for this long: the missing-hour alert (65 min:
    # hourly batches plus a few minutes' slack). Prefect's floor for a proactive trigger is 10 s.
    missing_hour_seconds: int = 3900
    # A file whose rejected share of lines is above this emits an alert; it is still loaded.
    reject_alert_ratio: float = 0.05
    # Above this rejected share a file is parked instead of loaded (as COPY's MAXERROR); None: never.
    max_reject_ratio: float | None = None
    # The market report's charts, in the staging bucket; they do not expire with the staged data.
    reports_prefix: str = "reports/"
    # The catch-up loads the files it ingests in batches of at most this many files, or (whichever comes
    # first) records read, each batch one warehouse transaction (berlin_rentals/warehouse/load.py);
    # 1: each file its own load, as an event-driven run does.
    batch_max_files: int = 24
    batch_max_records: int = 50_000
    # A catch-up with more files than this to ingest fans them out as runs of the ingest-batch deployment
    # (each on the work pool: in production its own ECS task), this many files a run.
    fanout_files: int = 500
    fanout_run_files: int = 240
    extra: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for setting, value in (
            ("WAREHOUSE_SCHEMA", self.warehouse_schema),
            ("WAREHOUSE_BI_SCHEMA", self.warehouse_bi_schema),
            ("WAREHOUSE_DWH_ROLE", self.warehouse_dwh_role),
            ("WAREHOUSE_BI_ROLE", self.warehouse_bi_role),
        ):
            if not PLAIN_IDENTIFIER.match(value):
                raise ConfigError(f"{setting}={value!r} is not a plain lower-case SQL identifier")
        # The BI role's whole boundary is "this schema and no other": one schema for both would erase it.
        if self.warehouse_bi_schema == self.warehouse_schema:
            raise ConfigError(f"WAREHOUSE_BI_SCHEMA must differ from WAREHOUSE_SCHEMA ({self.warehouse_schema!r})")
        if self.warehouse_bi_role == self.warehouse_dwh_role:
            raise ConfigError(f"WAREHOUSE_BI_ROLE must differ from WAREHOUSE_DWH_ROLE ({self.warehouse_dwh_role!r})")
        if "/" not in self.notification_block.strip("/"):
            raise ConfigError(
                f"ETL_NOTIFICATION_BLOCK={self.notification_block!r} is not `<block type slug>/<block name>`, "
                "e.g. custom-webhook/berlin-rentals-alerts or slack-webhook/berlin-rentals-alerts"
            )
        if not self.results_block.startswith("s3-bucket/") or not self.results_block.removeprefix("s3-bucket/"):
            raise ConfigError(f"ETL_RESULTS_BLOCK={self.results_block!r} is not `s3-bucket/<block name>`")
        for name in ("raw_bucket", "staging_bucket"):
            if not _BUCKET.match(getattr(self, name)):
                raise ConfigError(f"{name}={getattr(self, name)!r} is not a valid S3 bucket name")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        url = env.get("WAREHOUSE_URL")
        if not url:
            raise ConfigError("WAREHOUSE_URL is not set (run `make up` and source .local/env)")
        schema = env.get("WAREHOUSE_SCHEMA", cls.warehouse_schema)
        return cls(
            warehouse_url=url,
            warehouse_schema=schema,
            warehouse_bi_schema=env.get("WAREHOUSE_BI_SCHEMA") or bi_schema_for(schema),
            warehouse_dwh_role=env.get("WAREHOUSE_DWH_ROLE", cls.warehouse_dwh_role),
            warehouse_bi_role=env.get("WAREHOUSE_BI_ROLE", cls.warehouse_bi_role),
            warehouse_dwh_url=env.get("WAREHOUSE_DWH_URL") or None,
            warehouse_bi_url=env.get("WAREHOUSE_BI_URL") or None,
            raw_bucket=env.get("ETL_RAW_BUCKET", cls.raw_bucket),
            raw_prefix=_prefix(env.get("ETL_RAW_PREFIX", cls.raw_prefix)),
            staging_bucket=env.get("ETL_STAGING_BUCKET", cls.staging_bucket),
            staging_prefix=_prefix(env.get("ETL_STAGING_PREFIX", cls.staging_prefix)),
            queue_name=env.get("ETL_QUEUE_NAME", cls.queue_name),
            dlq_name=env.get("ETL_DLQ_NAME", cls.dlq_name),
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            aws_region=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or cls.aws_region,
            raw_admin_arn=env.get("ETL_RAW_ADMIN_ARN") or None,
            redshift_iam_role_arn=env.get("REDSHIFT_IAM_ROLE_ARN") or None,
            max_member_bytes=int(env.get("ETL_MAX_MEMBER_BYTES", cls.max_member_bytes)),
            max_line_bytes=int(env.get("ETL_MAX_LINE_BYTES", cls.max_line_bytes)),
            max_inflate_ratio=float(env.get("ETL_MAX_INFLATE_RATIO", cls.max_inflate_ratio)),
            max_file_bytes=int(env.get("ETL_MAX_FILE_BYTES", cls.max_file_bytes)),
            max_rejected_raw_bytes=int(env.get("ETL_MAX_REJECTED_RAW_BYTES", cls.max_rejected_raw_bytes)),
            max_attempts=int(env.get("ETL_MAX_ATTEMPTS", cls.max_attempts)),
            attempt_stale_seconds=int(env.get("ETL_ATTEMPT_STALE_SECONDS", cls.attempt_stale_seconds)),
            mask_personal_data=env.get("ETL_MASK_PERSONAL_DATA", "").strip().lower() in ("1", "true", "yes"),
            mask_salt=env.get("ETL_MASK_SALT") or None,
            results_prefix=_prefix(env.get("ETL_RESULTS_PREFIX", cls.results_prefix)),
            staging_retention_days=int(env.get("ETL_STAGING_RETENTION_DAYS", cls.staging_retention_days)),
            results_block=env.get("ETL_RESULTS_BLOCK") or cls.results_block,
            queue_max_receives=int(env.get("ETL_QUEUE_MAX_RECEIVES", cls.queue_max_receives)),
            bridge_backoff_seconds=float(env.get("ETL_BRIDGE_BACKOFF_SECONDS", cls.bridge_backoff_seconds)),
            bridge_backoff_max_seconds=float(env.get("ETL_BRIDGE_BACKOFF_MAX_SECONDS", cls.bridge_backoff_max_seconds)),
            load_concurrency=int(env.get("ETL_LOAD_CONCURRENCY", cls.load_concurrency)),
            notification_block=env.get("ETL_NOTIFICATION_BLOCK") or cls.notification_block,
            missing_hour_seconds=int(env.get("ETL_MISSING_HOUR_SECONDS", cls.missing_hour_seconds)),
            reject_alert_ratio=_ratio(env, "ETL_REJECT_ALERT_RATIO", cls.reject_alert_ratio),
            max_reject_ratio=_ratio(env, "ETL_MAX_REJECT_RATIO", None),
            reports_prefix=_prefix(env.get("ETL_REPORTS_PREFIX", cls.reports_prefix)),
            batch_max_files=_at_least_one(env, "ETL_BATCH_MAX_FILES", cls.batch_max_files),
            batch_max_records=_at_least_one(env, "ETL_BATCH_MAX_RECORDS", cls.batch_max_records),
            fanout_files=_at_least_one(env, "ETL_FANOUT_FILES", cls.fanout_files),
            fanout_run_files=_at_least_one(env, "ETL_FANOUT_RUN_FILES", cls.fanout_run_files),
        )

    def bi_url(self) -> str:
        """The BI role's login: what the market report reads with, so it sees no more than an analyst."""
        if not self.warehouse_bi_url:
            raise ConfigError("WAREHOUSE_BI_URL is not set: the market report reads the BI views as the BI role")
        return self.warehouse_bi_url

    def masker(self):
        """The Masker when masking is on; a missing salt is a configuration error, not silent clear text."""
        if not self.mask_personal_data:
            return None
        if not self.mask_salt:
            raise ConfigError("ETL_MASK_PERSONAL_DATA is on but ETL_MASK_SALT is not set")
        from berlin_rentals.masking import Masker

        return Masker(self.mask_salt.encode())

    def pseudonymizer(self):
        """The Masker of dim_agent's pseudonym columns: whenever ETL_MASK_SALT is set, None without it."""
        if not self.mask_salt:
            return None
        from berlin_rentals.masking import Masker

        try:
            return Masker(self.mask_salt.encode())
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def bi_schema_for(warehouse_schema: str) -> str:
    """The BI schema of a warehouse schema when WAREHOUSE_BI_SCHEMA is not set."""
    return f"{warehouse_schema}_bi"


DEFAULT_RETRY_DELAYS = (2.0, 8.0, 30.0)


def retry_delays(environ: dict[str, str] | None = None) -> list[float]:
    """Seconds before each retry of an I/O step (`ETL_RETRY_DELAYS`, comma-separated; default 2,8,30).

    Read once, when the tasks are defined (Prefect fixes a task's retry delays at decoration time);
    the tests set short ones for the processes they start.
    """
    env = os.environ if environ is None else environ
    raw = (env.get("ETL_RETRY_DELAYS") or "").strip()
    if not raw:
        return list(DEFAULT_RETRY_DELAYS)
    try:
        delays = [float(part) for part in raw.split(",")]
    except ValueError:
        raise ConfigError(f"ETL_RETRY_DELAYS={raw!r} is not a comma-separated list of seconds") from None
    if any(d < 0 or d != d for d in delays):
        raise ConfigError(f"ETL_RETRY_DELAYS={raw!r} has a negative delay")
    return delays


def read_env_file(path: str | Path) -> dict[str, str]:
    """Parse the `export KEY=VALUE` lines that `make up` writes to `.local/env` (plain KEY=VALUE too)."""
    values: dict[str, str] = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().removeprefix("export ").strip()] = value.strip()
    return values


def local_stack_defaults() -> dict[str, str]:
    """The settings `make up` writes to .local/env unless the user exported them: Settings' own defaults."""
    return {
        "WAREHOUSE_SCHEMA": Settings.warehouse_schema,
        "WAREHOUSE_DWH_ROLE": Settings.warehouse_dwh_role,
        "WAREHOUSE_BI_ROLE": Settings.warehouse_bi_role,
        "ETL_RAW_BUCKET": Settings.raw_bucket,
        "ETL_RAW_PREFIX": Settings.raw_prefix,
        "ETL_STAGING_BUCKET": Settings.staging_bucket,
        "ETL_STAGING_PREFIX": Settings.staging_prefix,
        "ETL_QUEUE_NAME": Settings.queue_name,
        "ETL_DLQ_NAME": Settings.dlq_name,
    }
