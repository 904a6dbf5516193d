from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger

from berlin_rentals.config import Settings
from berlin_rentals.ingest_result import IngestResult
from berlin_rentals.lineage import (
    MAX_REJECTS_SHOWN,
    artifact_key,
    lineage_row,
    object_link,
    rejected_rows,
    summary_markdown,
)
from berlin_rentals.markdown import cells, code
from berlin_rentals.s3 import s3_client
from berlin_rentals.staging import read_staged_table
from tasks.common import ARTIFACT_STEP


@task(name="record-lineage", **ARTIFACT_STEP)
def record_lineage(settings: Settings, result: IngestResult, closing: str) -> None:
    """Lineage as keyed artifacts of the flow run: a table (read, staged, written), a summary, the rejects."""
    row = lineage_row(result) | {
        "source_link": object_link(result.bucket, result.key, settings.aws_endpoint_url, settings.aws_region)
    }
    create_table_artifact(
        key=artifact_key(result.key),
        table=cells([row]),
        description=f"Lineage of {code(result.uri)} (ETag {code(result.etag)}): read, staged, written",
    )
    create_markdown_artifact(
        key=artifact_key(result.key, "summary"),
        markdown=summary_markdown(result, closing),
        description=f"Summary of the ingest of {code(result.uri)}",
    )
    rejected = _rejected(settings, result)
    rows = rejected_rows(rejected)
    if rows:
        shown = f"the first {len(rows)} of {rejected.num_rows}" if rejected.num_rows > len(rows) else "all"
        create_table_artifact(
            key=artifact_key(result.key, "rejects"),
            table=cells(rows),
            description=(
                f"Lines of {code(result.uri)} that could not become a listing ({shown}; at most "
                f"{MAX_REJECTS_SHOWN} shown; the warehouse's rejected_records holds every one)"
            ),
        )


def _rejected(settings: Settings, result: IngestResult):
    """The run's rejected lines: in memory when this run transformed the file, else (a cache hit) from the
    staged Parquet, which the load just read."""
    staged = result.staged
    if staged is None or not staged.rows.get("rejected_records"):
        return None
    if staged.data is not None:
        return staged.data["rejected_records"]
    try:
        return read_staged_table(s3_client(settings), staged, "rejected_records")
    except Exception as exc:  # noqa: BLE001 - the artifact is a view; the warehouse has every rejected line
        get_run_logger().warning("the rejected lines of %s were not read back for the artifact: %r", result.uri, exc)
        return None
