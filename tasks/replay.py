"""Tasks of the replay-rejects flow: thin wrappers over berlin_rentals.replay (retries live here)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from berlin_rentals.config import Settings
from berlin_rentals.lineage import artifact_key
from berlin_rentals.markdown import cells, code
from berlin_rentals.replay import (
    ReplayOutcome,
    ledger_versions,
    replay_file,
    replay_markdown,
    replay_rows,
    replayable_etag,
)
from berlin_rentals.s3 import s3_client
from berlin_rentals.source import SourceObject, normalize_etag, validate_key
from berlin_rentals.warehouse.engines import target_for
from tasks.common import ARTIFACT_STEP, io_step, warehouse_engine


@io_step(name="check-replayable")
def check_replayable(settings: Settings, bucket: str, key: str, etag: str | None) -> tuple[str, int | None]:
    """(the version to replay, its rejected_count) per the ledger; refuses anything not 'loaded'."""
    validate_key(key, settings.raw_prefix)  # untrusted input: checked before it reaches any SQL
    versions = ledger_versions(warehouse_engine(settings.warehouse_url), settings.warehouse_schema, bucket, key)
    chosen = replayable_etag(versions, bucket, key, normalize_etag(etag))
    return chosen, versions[chosen][1]


@io_step(name="replay-lines")
def replay_lines(settings: Settings, source: SourceObject, archive: Path, flow_run_id: str | None) -> ReplayOutcome:
    """Pick the rejected lines, transform them with the current code, load what they yield: one transaction."""
    target = target_for(settings.warehouse_url, settings.warehouse_schema, settings.redshift_iam_role_arn)
    return replay_file(
        warehouse_engine(settings.warehouse_url),
        target,
        s3_client(settings),
        source,
        archive,
        settings,
        flow_run_id=flow_run_id,
    )


@task(name="record-replay-lineage", **ARTIFACT_STEP)
def record_replay_lineage(outcome: ReplayOutcome) -> None:
    """What the replay recovered and what is still rejected (with reasons), as artifacts of the run."""
    if outcome.lines:
        create_table_artifact(
            key=artifact_key(outcome.key, "replay"),
            table=cells(replay_rows(outcome)),
            description=(
                f"Rejected lines of {code(f's3://{outcome.bucket}/{outcome.key}')} (ETag {code(outcome.etag)}) replayed"
            ),
        )
    create_markdown_artifact(
        markdown=replay_markdown(outcome),
        description=f"Replay of the rejected lines of {code(f's3://{outcome.bucket}/{outcome.key}')}",
    )
