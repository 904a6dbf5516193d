"""Tasks of the catch-up flow: thin wrappers over berlin_rentals.raw_listing and the report's artifacts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger

from berlin_rentals.catch_up import Ledger, RawObject, due_objects, report_table
from berlin_rentals.config import Settings
from berlin_rentals.markdown import cells, code, text
from berlin_rentals.raw_listing import ledger_rows, raw_object_pages
from berlin_rentals.s3 import s3_client
from tasks.common import ARTIFACT_STEP, io_step, warehouse_engine


@io_step(name="list-raw-objects")
def find_raw_objects(
    settings: Settings, prefix: str, since: datetime, until: datetime, all_files: bool = False
) -> tuple[list[RawObject], Ledger]:
    """The .zip objects under the prefix that are due (batch hour or upload in [since, until), or every one
    with all_files), with their ledger rows: one listing page, then that page's ledger query, at a time."""
    logger = get_run_logger()

    def ignored(key: str, exc: Exception) -> None:
        logger.warning("ignoring s3://%s/%s: %s", settings.raw_bucket, key, exc)

    objects: list[RawObject] = []
    ledger: Ledger = {}
    with warehouse_engine(settings.warehouse_url).connect() as conn:
        for page in raw_object_pages(s3_client(settings), settings.raw_bucket, prefix, on_ignored=ignored):
            due = due_objects(page, since, until, everything=all_files)
            if due:
                objects += due
                ledger |= ledger_rows(conn, settings.warehouse_schema, settings.raw_bucket, [o.key for o in due])
    return objects, ledger


@io_step(name="read-ledger")
def read_ledger(settings: Settings, keys: list[str]) -> Ledger:
    """The ledger rows of these keys only."""
    if not keys:
        return {}
    with warehouse_engine(settings.warehouse_url).connect() as conn:
        return ledger_rows(conn, settings.warehouse_schema, settings.raw_bucket, keys)


@task(name="publish-report", **ARTIFACT_STEP)
def publish_report(report: dict[str, Any], markdown: str, lineage: list[dict[str, Any]], bucket: str) -> None:
    create_table_artifact(
        key="catch-up-report", table=cells(report_table(report)), description=f"Catch-up of {text(report['scope'])}"
    )
    if lineage:
        create_table_artifact(
            key="catch-up-lineage",
            table=cells(lineage),
            description=f"Lineage of each file this run ingested from {code(f's3://{bucket}')} (one row per file)",
        )
    create_markdown_artifact(
        key="catch-up-gaps",
        markdown=markdown,
        description="Hours with no file, parked files, and files per hour",
    )
