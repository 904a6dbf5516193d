"""The one place for configuration: every environment variable the code reads is declared here, on the
settings class of the component that reads it, with its parser (env.py). docs/configuration.md lists them
all, and tests/unit/test_config_reference.py checks the list against COMPONENTS.

    pipeline       Settings              flows/, tasks/ and the core they call
    bridge         BridgeSettings        bridge/sqs_bridge.py
    provisioning   ProvisioningSettings  provisioning/aws.py, `make up`'s AWS resources
    alerts         AlertSettings         deployments/automations.py
    load limit     LoadLimitSettings     deployments/concurrency.py
    results block  ResultsBlockSettings  deployments/results.py
    raw record     RawRecordSettings     python -m berlin_rentals.raw_record
    samples        SampleSettings        berlin_rentals/synthetic.py (the demo, the tests, the benchmarks)
    prefect.yaml   DeployFileSettings    the placeholders `prefect deploy` fills in

AwsSettings (endpoint, region, attempts per call), RawZone, StagingZone and Queues are their common parts.
"""

from __future__ import annotations

from pathlib import Path

from berlin_rentals.config.components import (
    AlertSettings,
    AwsSettings,
    BridgeSettings,
    DeployFileSettings,
    LoadLimitSettings,
    ProvisioningSettings,
    Queues,
    RawRecordSettings,
    RawZone,
    ResultsBlockSettings,
    SampleSettings,
    StagingZone,
)
from berlin_rentals.config.env import BUCKET_NAME, PLAIN_IDENTIFIER, ConfigError, EnvSettings
from berlin_rentals.config.pipeline import DEFAULT_RETRY_DELAYS, Settings, bi_schema_for, retry_delays

COMPONENTS: tuple[type[EnvSettings], ...] = (
    Settings,
    BridgeSettings,
    ProvisioningSettings,
    AlertSettings,
    LoadLimitSettings,
    ResultsBlockSettings,
    RawRecordSettings,
    SampleSettings,
    DeployFileSettings,
)


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
    """The settings `make up` writes to .local/env unless the user exported them: the settings' own defaults."""
    return {
        "WAREHOUSE_SCHEMA": Settings.warehouse_schema,
        "WAREHOUSE_DWH_ROLE": Settings.warehouse_dwh_role,
        "WAREHOUSE_BI_ROLE": Settings.warehouse_bi_role,
        "ETL_RAW_BUCKET": RawZone.raw_bucket,
        "ETL_RAW_PREFIX": RawZone.raw_prefix,
        "ETL_STAGING_BUCKET": StagingZone.staging_bucket,
        "ETL_STAGING_PREFIX": StagingZone.staging_prefix,
        "ETL_QUEUE_NAME": Queues.queue_name,
        "ETL_DLQ_NAME": Queues.dlq_name,
    }


__all__ = [
    "BUCKET_NAME",
    "COMPONENTS",
    "DEFAULT_RETRY_DELAYS",
    "PLAIN_IDENTIFIER",
    "AlertSettings",
    "AwsSettings",
    "BridgeSettings",
    "ConfigError",
    "DeployFileSettings",
    "EnvSettings",
    "LoadLimitSettings",
    "ProvisioningSettings",
    "Queues",
    "RawRecordSettings",
    "RawZone",
    "ResultsBlockSettings",
    "SampleSettings",
    "Settings",
    "StagingZone",
    "bi_schema_for",
    "read_env_file",
    "retry_delays",
]
