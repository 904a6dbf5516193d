"""One catch-up flow run over a benchmark's files, measured where the work happens (bench/catch_up.py's
docstring says what each figure means): its Prefect API calls, its lineage, its task runs' durations."""

from __future__ import annotations

import json
import logging
import os
import re
import statistics
import threading
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

from bench.week import BENCH_BUCKET, delete_folder, upload_week


class ApiMeter:
    """Calls to the Prefect API from this process (both of Prefect's httpx clients), count and wall time,
    and the events it emits (task run states travel as events over a websocket, not as API calls)."""

    _ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self.events: dict[str, int] = defaultdict(int)
        self.restore: list[tuple[object, str, object]] = []

    def _count(self, request, elapsed: float) -> None:
        name = f"{request.method} {self._ID.sub('{id}', request.url.path)}"
        with self.lock:
            self.calls[name] += 1
            self.seconds[name] += elapsed

    def install(self) -> None:
        from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient
        from prefect.events.clients import EventsClient

        meter = self
        sync_send, async_send = PrefectHttpxSyncClient.send, PrefectHttpxAsyncClient.send
        emit = EventsClient.emit

        def send(client, request, *args, **kwargs):
            started = time.perf_counter()
            try:
                return sync_send(client, request, *args, **kwargs)
            finally:
                meter._count(request, time.perf_counter() - started)

        async def asend(client, request, *args, **kwargs):
            started = time.perf_counter()
            try:
                return await async_send(client, request, *args, **kwargs)
            finally:
                meter._count(request, time.perf_counter() - started)

        async def counted_emit(client, event, *args, **kwargs):
            with meter.lock:
                meter.events[event.event] += 1
            return await emit(client, event, *args, **kwargs)

        self.restore = [
            (PrefectHttpxSyncClient, "send", sync_send),
            (PrefectHttpxAsyncClient, "send", async_send),
            (EventsClient, "emit", emit),
        ]
        PrefectHttpxSyncClient.send, PrefectHttpxAsyncClient.send = send, asend
        EventsClient.emit = counted_emit

    def uninstall(self) -> None:
        for cls, name, original in self.restore:
            setattr(cls, name, original)
        self.restore.clear()

    def summary(self, files: int) -> dict:
        top = sorted(self.calls, key=lambda n: -self.seconds[n])[:12]
        return {
            "calls_per_file": round(sum(self.calls.values()) / files, 1),
            "seconds_per_file": round(sum(self.seconds.values()) / files, 4),
            "slowest": {n: {"calls": self.calls[n], "seconds": round(self.seconds[n], 3)} for n in top},
            "events_per_file": round(sum(self.events.values()) / files, 1),
            "events": dict(sorted(self.events.items(), key=lambda kv: -kv[1])[:12]),
        }


class ProgressLines(logging.Handler):
    """The catch-up's own per-file line `[n/N] key: status (seconds)`: its wall time per file's task run."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[str, float] = {}
        self.status: dict[str, str] = {}
        self.detail: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and record.msg.startswith("[%d/%d] %s: %s (%.2f s)"):
            # (n, N, key, status, seconds, detail, the batch it loaded in): more may follow one day.
            key, status, seconds, detail = record.args[2:6]
            self.seconds[key] = seconds
            self.status[key] = status
            self.detail[key] = str(detail).strip()[:300]


def run_catch_up(paths: list[Path], max_concurrency: int, start: datetime, batch_max_files: int) -> dict:
    """One catch-up over these files, uploaded afresh, with `batch_max_files` files per load (1: a load each)."""
    from berlin_rentals.config import Settings
    from berlin_rentals.s3 import s3_client

    run_id = uuid.uuid4().hex[:12]
    settings = Settings.from_env()
    s3 = s3_client(settings)
    folder = f"{settings.raw_prefix}bench-{run_id}/"
    upload_week(s3, paths, BENCH_BUCKET, folder, run_id)

    # The flow reads its settings from the environment: point it at the benchmark's raw bucket.
    os.environ["ETL_RAW_BUCKET"] = BENCH_BUCKET
    from flows.catch_up import catch_up

    progress, api = ProgressLines(), ApiMeter()
    flow_logger = logging.getLogger("prefect.flow_runs")
    flow_logger.addHandler(progress)
    api.install()
    try:
        started = time.perf_counter()
        state = catch_up(
            since=start,
            until=start + timedelta(hours=len(paths)),
            max_concurrency=max_concurrency,
            prefix=folder,
            batch_max_files=batch_max_files,
            # Never fanned out (a month is above ETL_FANOUT_FILES): ingest-batch runs would run on the
            # stack's worker with its settings (another raw bucket), and this measures one process's flow.
            fanout_above=len(paths),
            return_state=True,
        )
        wall = time.perf_counter() - started
        report = state.result()
    finally:
        api.uninstall()
        flow_logger.removeHandler(progress)
        os.environ["ETL_RAW_BUCKET"] = settings.raw_bucket
        delete_folder(s3, BENCH_BUCKET, folder)
    batched = batch_max_files > 1
    lineage, task_seconds, loads = read_run_records(state.state_details.flow_run_id, len(paths), batched)

    # A file the catch-up could not load (e.g. the API refused its task run) is reported, not hidden:
    # the rate counts loaded records only, over the whole wall time.
    failed = sorted(report["failed"])
    keys = [f"{folder}{path.name}" for path in paths if f"{folder}{path.name}" not in failed]
    if report["loaded_now"] != len(keys):
        raise SystemExit(f"the catch-up did not load every file it did not fail: {report}")
    missing = [k for k in keys if "transform" not in lineage.get(k, {}).get("steps", "") or k not in task_seconds]
    if missing:
        raise SystemExit(f"no lineage steps or no task run measured for {len(missing)} files, e.g. {missing[:3]}")
    unbatched = [k for k in keys if batched and not lineage[k].get("batch")]
    if unbatched:  # loaded alone (a batch that failed and was split down to it): not what this measures
        print(f"  note: {len(unbatched)} file(s) loaded outside a batch, e.g. {unbatched[:3]}", flush=True)
    own = [lineage[k]["seconds"] for k in keys]
    by_step: dict[str, float] = defaultdict(float)
    for k in keys:
        for part in lineage[k]["steps"].split(", "):
            step, seconds = part.rsplit(" ", 1)
            by_step[step] += float(seconds)
    # The time in loads: the load-batch task runs' (batched), else each file's own load step.
    load_seconds = sum(loads.values()) if batched else by_step.get("load", 0.0)
    work = sum(own) + (load_seconds if batched else 0.0)
    overhead = [task_seconds[k] - lineage[k]["seconds"] for k in keys]
    processes = min(max_concurrency, len(paths))
    cores = os.cpu_count() or 1
    return {
        "batch_max_files": batch_max_files,
        "wall_seconds": round(wall, 3),
        "max_concurrency": max_concurrency,
        "processes": processes,
        "files_loaded": report["loaded_now"],
        "files_failed": len(failed),
        "failures": {key.rsplit("/", 1)[-1]: progress.detail.get(key, "") for key in failed},
        # One warehouse transaction per load-batch task run (its retries aside), else one per file.
        "load_transactions": len(loads) if batched else len(keys),
        "load_seconds_sum": round(load_seconds, 3),
        "load_batches": (
            {
                "count": len(loads),
                "seconds_mean": round(statistics.mean(loads.values()), 4) if loads else None,
                "files_mean": round((len(keys) - len(unbatched)) / len(loads), 2) if loads else None,
            }
            if batched
            else None
        ),
        "work_seconds_sum": round(work, 3),
        "work_seconds_by_step": {k: round(v, 3) for k, v in sorted(by_step.items(), key=lambda kv: -kv[1])},
        # What a file costs: wall time per file, and the work (its own steps, its share of the batch's load).
        "wall_seconds_per_file": round(wall / len(keys), 4),
        "work_seconds_per_file_mean": round(work / len(keys), 4),
        "task_run_seconds_mean": round(statistics.mean(task_seconds[k] for k in keys), 4),
        "prefect_overhead_per_task_run": {
            "mean": round(statistics.mean(overhead), 4),
            "median": round(statistics.median(overhead), 4),
            "p95": round(sorted(overhead)[int(0.95 * (len(overhead) - 1))], 4),
        },
        # The form, wall time minus the sum of the work, over the processes that share it.
        "wall_minus_work_per_file": round((wall * processes - work) / len(keys), 4),
        # This run's work spread perfectly over every core: the least wall time it allows.
        "work_on_all_cores_seconds": round(work / cores, 3),
        # The Prefect API calls of this process (the flow's own; the task runs in the pool report their
        # states as events, which this process forwards and counts), per file.
        "prefect_api": api.summary(len(keys)),
    }


# The per-file task run of each mode: (task key's start, its run name's prefix before the key).
PER_FILE_RUNS = {True: ("stage_object", "stage "), False: ("ingest_object", "ingest ")}


def read_run_records(
    flow_run_id, files: int, batched: bool
) -> tuple[dict[str, dict], dict[str, float], dict[str, float]]:
    """The catch-up run's lineage rows by key (its `catch-up-lineage` artifact), each per-file task run's
    duration by key (stage-object in batched mode, ingest-object otherwise), and each completed load-batch
    task run's duration by its id, as the Prefect server recorded them (events arrive a moment after the
    run, so this waits until every file's task run and every batch its lineage names are final)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    task_key, prefix = PER_FILE_RUNS[batched]
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                    key=ArtifactFilterKey(any_=["catch-up-lineage"]),
                )
            )
            every = []
            while True:  # the API answers at most 200 at a time
                page = client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200, offset=len(every)
                )
                every += page
                if len(page) < 200:
                    break
            final = [r for r in every if r.state and r.state.is_final() and r.start_time and r.end_time]
            runs = [r for r in final if r.task_key.startswith(task_key)]
            # A load-batch run that failed after its retries committed nothing: its files went on in halves.
            loads = [r for r in final if r.task_key.startswith("load_batch") and r.state.is_completed()]
            data = artifacts[0].data if artifacts else "[]"
            rows = json.loads(data) if isinstance(data, str) else data
            named = {row["batch"] for row in rows if row.get("batch")}
            if (artifacts and len(runs) >= files and named <= {str(r.id) for r in loads}) or (
                time.monotonic() > deadline
            ):
                break
            time.sleep(1)
    task_seconds = {r.name[len(prefix) :]: (r.end_time - r.start_time).total_seconds() for r in runs}
    load_seconds = {str(r.id): (r.end_time - r.start_time).total_seconds() for r in loads}
    return {row["key"]: row for row in rows}, task_seconds, load_seconds
