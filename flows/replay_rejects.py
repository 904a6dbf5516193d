"""Replay the rejected lines of one loaded object version after the transform was fixed.

Only the lines in rejected_records are read again (from the raw object version, by ETag) and put
through the current transform; the file's good lines are never reloaded. Run from the Prefect UI
(deployment 'replay-rejects') or here: `python -m flows.replay_rejects <bucket> <key> [--etag ETAG]`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from berlin_rentals.config import Settings
from berlin_rentals.errors import ObjectChanged
from berlin_rentals.replay import ReplayOutcome, ReplayRefused
from tasks.extract import extract, inspect_source
from tasks.replay import check_replayable, record_replay_lineage, replay_lines


@flow(name="replay-rejects", log_prints=True)
def replay_rejects(bucket: str, key: str, etag: str | None = None) -> dict[str, Any]:
    """Retry the rejected lines of s3://bucket/key (its loaded version, or the one with this ETag)."""
    started = time.perf_counter()
    logger = get_run_logger()
    settings = Settings.from_env()
    run_id = str(flow_run.id) if flow_run.id else None

    version, rejected = check_replayable(settings, bucket, key, etag)
    if rejected == 0:
        outcome = ReplayOutcome(status="nothing to replay", bucket=bucket, key=key, etag=version)
    else:
        try:
            source = inspect_source(settings, bucket, key, version)
        except ObjectChanged as exc:
            raise ReplayRefused(f"{exc}. The loaded version's bytes are gone from under the key: "
                                "ingest the new version (a correction) instead of replaying the old one") from exc
        with tempfile.TemporaryDirectory(prefix="replay-") as workdir:
            archive = extract(settings, source, Path(workdir))
            outcome = replay_lines(settings, source, archive, run_id)
    outcome.seconds = round(time.perf_counter() - started, 3)
    record_replay_lineage(outcome)
    logger.info("s3://%s/%s (ETag %s): %s in %.2f s %s", bucket, key, version, outcome.status,
                outcome.seconds, outcome.as_dict())
    return outcome.as_dict()


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Replay one object version's rejected lines in this process.")
    parser.add_argument("bucket")
    parser.add_argument("key")
    parser.add_argument("--etag", help="the version to replay (default: the key's loaded version)")
    args = parser.parse_args()
    state = replay_rejects(args.bucket, args.key, args.etag, return_state=True)
    result = state.result(raise_on_failure=False)
    print(result)
    sys.exit(0 if state.is_completed() else 1)
