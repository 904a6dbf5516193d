"""Small helpers shared by the integration tests: upload, query, and read back a flow run."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)

from berlin_rentals.config import Settings
from berlin_rentals.source import normalize_etag
from tasks.common import warehouse_engine


def upload(s3, settings: Settings, name: str, body: bytes, *, folder: str | None = None) -> tuple[str, str]:
    """Put a batch under the raw prefix (in a folder of its own unless given); return (key, etag)."""
    key = f"{settings.raw_prefix}{folder or uuid.uuid4().hex[:8]}/{name}"
    response = s3.put_object(Bucket=settings.raw_bucket, Key=key, Body=body)
    return key, normalize_etag(response["ETag"])


def query(settings: Settings, sql: str, **params: Any) -> list[sa.Row]:
    with warehouse_engine(settings.warehouse_url).connect() as conn:
        return conn.execute(sa.text(sql.replace("{schema}", settings.warehouse_schema)), params).all()


def scalar(settings: Settings, sql: str, **params: Any) -> Any:
    return query(settings, sql, **params)[0][0]


# Every table a load writes, dimensions first.
WAREHOUSE_TABLES = (
    "dim_city",
    "dim_district",
    "dim_address",
    "dim_agency",
    "dim_agent",
    "fact_flats",
    "flat_snapshots",
    "rejected_records",
    "load_ledger",
)


def table_counts(settings: Settings) -> dict[str, int]:
    tables = WAREHOUSE_TABLES
    return {t: scalar(settings, f"SELECT COUNT(*) FROM {{schema}}.{t}") for t in tables}


def artifacts_of(flow_run_id) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def flow_run_of(state):
    """The flow run a state belongs to, as the API (and so the UI) shows it: name, state name, tags."""
    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


def logs_of(flow_run_id, timeout: float = 15) -> list:
    """The run's logs as the API stores them (sent in the background: wait until the flow's own final state line;
    a task run's "Finished in state" carries the flow run's id too and comes long before the flow's last lines)."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            final = any(log.task_run_id is None and "Finished in state" in log.message for log in logs)
            if final or time.monotonic() > deadline:
                return logs
            time.sleep(0.5)


def task_runs_of(flow_run_id) -> list:
    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def child_flow_runs_of(flow_run_id) -> list:
    """Flow runs started inside this one (subflows)."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )


def wait_for_status(settings: Settings, key: str, etag: str, status: str = "loaded", timeout: float = 120) -> None:
    """Poll the ledger until this object version has the status (a run on the worker wrote it)."""
    deadline = time.monotonic() + timeout
    found = None
    while time.monotonic() < deadline:
        rows = query(settings, "SELECT status FROM {schema}.load_ledger WHERE key = :k AND etag = :e", k=key, e=etag)
        found = rows[0].status if rows else None
        if found == status:
            return
        time.sleep(0.3)
    raise AssertionError(f"{key} ({etag}) is {found!r} after {timeout} s, expected {status!r}")


def loads_of(settings: Settings, key: str) -> tuple[int, int]:
    """(snapshot rows, distinct flow runs that wrote them) for one key: a second load would show."""
    row = query(
        settings,
        """SELECT COUNT(*) AS n, COUNT(DISTINCT flow_run_id) AS runs
                             FROM {schema}.flat_snapshots WHERE source_key = :k""",
        k=key,
    )[0]
    return row.n, row.runs


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll until `check()` is truthy (and return it); fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def mark_runs_of_key_crashed(key: str) -> int:
    """A killed process's ingest-file run stays RUNNING for ever (nothing reports for it again): set it
    Crashed, as an operator would, so later tests that wait for idle ingest-file runs are not held up."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["ingest-file"])), limit=200)
        killed = [r for r in runs if r.parameters.get("key") == key and r.state and not r.state.is_final()]
        for run in killed:
            client.set_flow_run_state(run.id, Crashed(message="process killed (test)"), force=True)
    return len(killed)


def aws_client(service: str, env: dict[str, str]):
    """A boto3 client for a stack's moto server, from its env file's settings (moto takes any key)."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def prefect_api(env: dict[str, str], path: str, body: dict | None = None):
    """GET (or POST body to) the Prefect API of the stack whose settings are `env`, with its credentials."""
    from devstack.local_stack import _api_json

    return _api_json(env["PREFECT_API_URL"] + path, body, timeout=10, auth_string=env.get("PREFECT_API_AUTH_STRING"))
