"""Replay the rejected lines of one loaded object version after the transform was fixed.

Only the lines in rejected_records are read again (from the raw object version, by ETag) and put
through the current transform; the file's good lines are never reloaded. Run from the Prefect UI
(deployment 'replay-rejects') or here: `python -m flows.replay_rejects <bucket> <key> [--etag ETAG]`;
`--list [--since ISO]` shows the loaded versions that still have rejected lines, `--all` replays them.
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
from berlin_rentals.s3 import require_raw_bucket
from tasks.extract import extract, inspect_source
from tasks.replay import check_replayable, record_replay_lineage, replay_lines


@flow(name="replay-rejects", log_prints=True)
def replay_rejects(bucket: str, key: str, etag: str | None = None) -> dict[str, Any]:
    """Retry the rejected lines of s3://bucket/key (its loaded version, or the one with this ETag)."""
    started = time.perf_counter()
    settings = Settings.from_env()
    require_raw_bucket(bucket, settings.raw_bucket)  # a parameter is untrusted: no ledger query, no S3 call first
    logger = get_run_logger()
    run_id = str(flow_run.id) if flow_run.id else None

    version, rejected = check_replayable(settings, bucket, key, etag)
    if rejected == 0:
        outcome = ReplayOutcome(status="nothing to replay", bucket=bucket, key=key, etag=version)
    else:
        try:
            source = inspect_source(settings, bucket, key, version)
        except ObjectChanged as exc:
            raise ReplayRefused(
                f"{exc}. The loaded version's bytes are gone from under the key: "
                "ingest the new version (a correction) instead of replaying the old one"
            ) from exc
        with tempfile.TemporaryDirectory(prefix="replay-") as workdir:
            archive = extract(settings, source, Path(workdir))
            outcome = replay_lines(settings, source, archive, run_id)
    outcome.seconds = round(time.perf_counter() - started, 3)
    record_replay_lineage(outcome)
    logger.info(
        "s3://%s/%s (ETag %s): %s in %.2f s %s",
        bucket,
        key,
        version,
        outcome.status,
        outcome.seconds,
        outcome.as_dict(),
    )
    return outcome.as_dict()


def main(argv: list[str] | None = None) -> int:
    import argparse
    from datetime import UTC, datetime, timedelta

    from berlin_rentals.replay import files_with_rejects
    from tasks.common import warehouse_engine

    parser = argparse.ArgumentParser(
        description="Replay rejected lines in this process: one object version, or (--all) every loaded version "
        "that still has rejected lines; --list only shows those."
    )
    parser.add_argument("bucket", nargs="?")
    parser.add_argument("key", nargs="?")
    parser.add_argument("--etag", help="the version to replay (default: the key's loaded version)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="only list the loaded versions with rejected lines")
    mode.add_argument("--all", action="store_true", help="replay every loaded version with rejected lines")
    parser.add_argument(
        "--since", default=None, help="with --list/--all: batch hours from this ISO time on (default: the last 7 days)"
    )
    args = parser.parse_args(argv)
    if args.list or args.all:
        since = datetime.fromisoformat(args.since) if args.since else datetime.now(UTC) - timedelta(days=7)
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
        settings = Settings.from_env()
        files = files_with_rejects(warehouse_engine(settings.warehouse_url), settings.warehouse_schema, since)
        print(f"{len(files)} loaded version(s) with rejected lines since {since:%Y-%m-%d %H:%M} UTC")
        failed = 0
        for bucket, key, etag, hour, rejected in files:
            line = f"s3://{bucket}/{key}  {etag}  {hour:%Y-%m-%d %H:00}  {rejected} rejected"
            if args.all:
                state = replay_rejects(bucket, key, etag, return_state=True)
                result = state.result(raise_on_failure=False)
                failed += not state.is_completed()
                line += (
                    (
                        f"  -> {result['status']}: {result['recovered']} recovered, "
                        f"{result['still_rejected']} still rejected"
                    )
                    if state.is_completed()
                    else f"  -> failed: {result}"
                )
            print(line)
        return 1 if failed else 0
    if not (args.bucket and args.key):
        parser.error("bucket and key are required unless --list or --all is given")
    state = replay_rejects(args.bucket, args.key, args.etag, return_state=True)
    print(state.result(raise_on_failure=False))
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    import sys

    sys.exit(main())
