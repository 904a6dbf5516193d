"""Small helpers shared by the integration tests: upload, query, and read back a flow run."""

from __future__ import annotations

import time
import uuid
from typing import Any

import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowFilter,
    FlowFilterName,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType

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


def table_counts(settings: Settings) -> dict[str, int]:
    tables = ("dim_city", "dim_address", "dim_agency", "fact_flats", "flat_snapshots", "rejected_records", "load_ledger")
    return {t: scalar(settings, f"SELECT COUNT(*) FROM {{schema}}.{t}") for t in tables}


def artifacts_of(flow_run_id) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def task_runs_of(flow_run_id) -> list:
    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def child_flow_runs_of(flow_run_id) -> list:
    """Flow runs started inside this one (subflows)."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )


def wait_until_idle(timeout: float = 120) -> None:
    """No ingest-file run scheduled, pending or running: every event so far has been acted on."""
    active = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING]
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["ingest-file"])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=active))))
            if not runs:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(runs)} ingest-file runs still scheduled, pending or running after {timeout} s")
            time.sleep(0.5)
