"""A catch-up's fan-out: its files as runs of the catch-up deployment over a share each, waited for and reported on.

A catch-up with more files to ingest than ETL_FANOUT_FILES does not ingest them in its own process. A share's
run is the same flow over a given list (`catch_up(files=...)`), so it takes the one path through the pipeline.
"""

from __future__ import annotations

import time
from typing import Any

from prefect.logging import get_run_logger
from prefect.runtime import deployment, flow_run

from berlin_rentals.catch_up import FAILED, LOADED, SKIPPED, Outcome, RawObject
from berlin_rentals.config import Settings
from berlin_rentals.shares import as_parameter, share_key
from tasks.catch_up import read_ledger

# A share's run that has not ended by then (never picked up: no worker) is reported as failed; its files stay
# as the ledger has them, and the next catch-up takes them again (the ledger claim keeps them exactly once).
FAN_OUT_WAIT_SECONDS = 6 * 3600


def fan_out(
    settings: Settings, objects: list[RawObject], max_concurrency: int, batch_max_files: int, run_files: int
) -> tuple[list[Outcome], dict[tuple[str, str], dict[str, Any]]]:
    """The objects as runs of this deployment over a share of `run_files` each, on the work pool (on ECS each
    its own task): started at once, waited for, and each file's outcome read from the ledger afterwards (the
    runs record it there; their lineage is each run's own artifact). The runs' loads share `warehouse-load`."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    shares = [objects[i : i + run_files] for i in range(0, len(objects), run_files)]
    parent = flow_run.id
    started: list[tuple[Any, list[RawObject]]] = []
    for n, share in enumerate(shares, 1):
        first, last = share[0].batch_hour, share[-1].batch_hour
        run = run_deployment(
            f"catch-up/{deployment.name or 'catch-up'}",
            parameters={
                "bucket": settings.raw_bucket,
                "files": as_parameter(share),
                "max_concurrency": max_concurrency,
                "batch_max_files": batch_max_files,
            },
            flow_run_name=f"catch-up share {n}/{len(shares)}: {first:%Y%m%d_%H} to {last:%Y%m%d_%H}",
            timeout=0,
            # A retried catch-up finds the runs it started rather than starting them twice; keyed by the files
            # a share carries, so a retry whose listing changed never gets an old share's run for new files.
            idempotency_key=share_key(str(parent), share) if parent else None,
            tags=["fan-out"],
        )
        started.append((run, share))
    logger.info("%d files fanned out as %d catch-up runs of up to %d files", len(objects), len(shares), run_files)

    deadline = time.monotonic() + FAN_OUT_WAIT_SECONDS
    finished: dict[Any, Any] = {}
    with get_client(sync_client=True) as client:
        while len(finished) < len(started) and time.monotonic() < deadline:
            for run, _ in started:
                if run.id not in finished:
                    current = client.read_flow_run(run.id)
                    if current.state and current.state.is_final():
                        finished[run.id] = current
                        logger.info("%s: %s", current.name, current.state.name)
            if len(finished) < len(started):
                time.sleep(5)

    ledger_after = read_ledger(settings, [o.key for o in objects])
    outcomes: list[Outcome] = []
    lineage: dict[tuple[str, str], dict[str, Any]] = {}
    for run, share in started:
        current = finished.get(run.id)
        ended = current.state.name if current and current.state else "not ended"
        for obj in share:
            entry = ledger_after.get((obj.key, obj.etag))
            if entry is not None and entry.status == "loaded":
                status, detail = LOADED, ""
            elif entry is not None and entry.status in ("failed", "parked"):
                status, detail = FAILED, entry.error or entry.status
            elif current is not None and current.state.is_completed():
                status, detail = SKIPPED, f"ledger says {entry.status if entry else 'nothing'}"
            else:
                status, detail = FAILED, f"its share's run {run.name} ended {ended}"
            outcomes.append(Outcome(obj, status, detail, 0.0))
            lineage[(obj.key, obj.etag)] = {"status": status, "share_run": run.name, "error": detail or None}
    return outcomes, lineage
