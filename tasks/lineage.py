from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from berlin_rentals.config import Settings
from berlin_rentals.lineage import artifact_key, lineage_rows, object_link, summary_markdown
from berlin_rentals.source import SourceObject
from berlin_rentals.staging import StagedBatch
from berlin_rentals.transform import TransformStats
from berlin_rentals.warehouse.load import LoadReport


@task(name="record-lineage", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def record_lineage(
    settings: Settings, source: SourceObject, stats: TransformStats | None, staged: StagedBatch | None,
    report: LoadReport | None, status: str, seconds: float, error: str | None = None,
) -> None:
    """Lineage as artifacts of the flow run: what was read, what was written where."""
    key = artifact_key(source.key)
    create_table_artifact(
        key=key, table=lineage_rows(source, stats, report, status),
        description=f"Lineage of {source.uri} (ETag {source.etag})",
    )
    create_link_artifact(
        key=f"{key}-source", link=object_link(source.bucket, source.key, settings.aws_endpoint_url, settings.aws_region),
        link_text=source.uri, description="Raw object read by this run",
    )
    if staged is not None:
        for table in staged.rows:
            create_link_artifact(
                key=f"{key}-{table.replace('_', '-')}",
                link=object_link(staged.bucket, staged.table_key(table), settings.aws_endpoint_url, settings.aws_region),
                link_text=staged.uri(table),
                description=f"Staged Parquet of {table} ({staged.rows[table]} rows)",
            )
    create_markdown_artifact(
        markdown=summary_markdown(source, stats, staged, report, status, seconds, error),
        description=f"Summary of the ingest of {source.uri}",
    )
