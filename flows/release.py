"""Release parked object versions in bulk, e.g. every file parked while a setting or a permission was wrong.

A released version is 'failed' with no attempt counted: the next ingest (the hourly catch-up for batch
hours in its window, or `python -m flows.catch_up --since …`, or an ingest-file run) tries it again with
the full number of attempts. Run from the Prefect UI (deployment 'release-parked') or here:
`python -m flows.release --parked --since 2026-12-01T08:00 [--error AccessDenied] [--dry-run]`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow
from prefect.logging import get_run_logger

from berlin_rentals.config import Settings
from tasks.release import find_parked, release

DEFAULT_SINCE = timedelta(days=7)


def _like(text: str | None) -> str:
    """A LIKE pattern matching errors that contain `text` literally (its own % and _ match themselves)."""
    if not text:
        return "%"
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@flow(name="release-parked", log_prints=True)
def release_parked(
    since: datetime | None = None, error_contains: str | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Release the raw bucket's parked versions so they are ingested again with their attempts back.

    Args:
        since: Only versions parked at or after this time (UTC when naive); default: the last 7 days.
        error_contains: Only versions whose parking error contains this text, e.g. AccessDenied.
        dry_run: On: list what would be released, change nothing.
    """
    logger = get_run_logger()
    settings = Settings.from_env()
    since = since or datetime.now(UTC) - DEFAULT_SINCE
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    parked = find_parked(settings, since, _like(error_contains))
    released = [] if dry_run else [(key, etag) for key, etag, *_ in parked if release(settings, key, etag)]
    for key, etag, attempts, at, error in parked:
        logger.info(
            "%s s3://%s/%s (ETag %s), parked %s after %d attempt(s): %s",
            "would release" if dry_run else "released" if (key, etag) in released else "left (no longer parked)",
            settings.raw_bucket,
            key,
            etag,
            at,
            attempts,
            error[:200],
        )
    sentence = (
        f"{'would release' if dry_run else 'released'} {len(parked) if dry_run else len(released)} parked "
        f"version(s) of s3://{settings.raw_bucket} parked since {since:%Y-%m-%d %H:%M} UTC"
        + (f" with an error containing {error_contains!r}" if error_contains else "")
        + (
            ""
            if dry_run
            else "; each gets its full attempts again at its next ingest: the hourly catch-up's for batch hours of "
            "the last day, `python -m flows.catch_up --since …` or an ingest-file run for older ones"
        )
    )
    logger.info(sentence)
    return {
        "bucket": settings.raw_bucket,
        "since": since.isoformat(),
        "error_contains": error_contains,
        "dry_run": dry_run,
        "parked": [{"key": k, "etag": e, "attempts": n, "parked_at": at, "error": err} for k, e, n, at, err in parked],
        "released": [{"key": k, "etag": e} for k, e in released],
        "sentence": sentence,
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Release parked object versions in this process.")
    parser.add_argument("--parked", action="store_true", required=True, help="release parked versions (required)")
    parser.add_argument(
        "--since", type=datetime.fromisoformat, help="parked at or after this ISO time (default: 7 days ago)"
    )
    parser.add_argument("--error", dest="error_contains", help="only those whose error contains this text")
    parser.add_argument("--dry-run", action="store_true", help="only list them")
    args = parser.parse_args(argv)
    report = release_parked(args.since, args.error_contains, args.dry_run)
    for item in report["parked"]:
        print(
            f"s3://…/{item['key']}  {item['etag']}  parked {item['parked_at']}  {item['attempts']} attempt(s)  {item['error'][:100]}"
        )
    print(report["sentence"])
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
