"""Catch-up of one week through the real catch-up flow, against the single-core floor on the same files.

    make bench-catch-up      # make up, then: python -m bench.catch_up

One run, on the same 168 hourly files of 500 generated records (bench/generate.py):
  floor      inflate every member and split its lines, nothing else: one process, one core (the same
             code as bench/ingest.py's floor), best of the rounds before and after the catch-up
  serial     the project's ingest work file after file, no Prefect (download, transform, stage, load,
             ledger), one process: what the catch-up's work alone costs
  catch-up   flows/catch_up.py's `catch_up` flow called in this process against the local Prefect
             server, `max_concurrency` ingest-object task runs at once (default: the machine's cores)

The files go to a bucket of their own (`rentals-bench-raw`, no S3 notification, so no event-driven
run races the catch-up) under a fresh folder per run, and every file gets a one-line extra member
naming the run: a new ETag each run, so the transform's ETag cache never answers for it (an extra
non-JSON member is ignored by the ingest; the records are the same).

The catch-up runs each file's ingest-object task run in a pool of processes, so the work is measured
where it happens and reported back with the file: its lineage row (the `catch-up-lineage` artifact the
benchmark reads from the API after the run) carries the seconds the ingest spent from HEAD to the end of
the load, and per step. Prefect overhead per file is reported two ways:
  - per task run: the task run's duration as the Prefect server recorded it (start to end) minus the
    file's ingest work: what Prefect adds inside each task run;
  - the issue's form, wall time minus the sum of the ingest work, spread over the processes:
    (wall x processes - sum of work) / files: every worker-second not spent in the ingest work (process
    start-up, submission, event forwarding, the listing and report tasks, idle), per file.
And the bound the work sets: the serial ingest's seconds spread perfectly over every core, the best
ratio to the floor any scheduler could reach without making the work itself cheaper.
Results: bench/results/catch_up.json.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import statistics
import threading
import time
import uuid
import zipfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BENCH_BUCKET = "rentals-bench-raw"


def week_files(workdir: Path, files: int, records: int, start: datetime) -> list[Path]:
    """The week's batches, generated once (as `python -m bench.generate` names and seeds them)."""
    from bench.generate import write_batch
    from berlin_rentals.synthetic import batch_name

    folder = workdir / f"week_{files}x{records}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(files):
        hour = start + timedelta(hours=n)
        path = folder / f"{batch_name(hour)}.zip"
        if not path.exists():
            partial = path.with_suffix(".partial")
            write_batch(partial, records, hour, first_id=200_000_000 + n * records, seed=n)
            partial.rename(path)
        paths.append(path)
    return paths


def with_run_member(path: Path, run_id: str) -> bytes:
    """The zip plus a small text member naming the run: same records, a new ETag."""
    buffer = io.BytesIO(path.read_bytes())
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("bench-run.txt", f"benchmark run {run_id}\n")
    return buffer.getvalue()


def upload_week(s3, paths: list[Path], bucket: str, folder: str, run_id: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:  # noqa: BLE001 - not there yet
        region = s3.meta.region_name
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    for path in paths:
        s3.put_object(Bucket=bucket, Key=f"{folder}{path.name}", Body=with_run_member(path, run_id))


def delete_folder(s3, bucket: str, folder: str) -> None:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=folder):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})


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
            _, _, key, status, seconds, detail = record.args
            self.seconds[key] = seconds
            self.status[key] = status
            self.detail[key] = str(detail).strip()[:300]


def floor_week(paths: list[Path]) -> tuple[int, float]:
    from bench.ingest import floor

    started = time.perf_counter()
    records = sum(floor(path) for path in paths)
    return records, time.perf_counter() - started


def serial_week(paths: list[Path]) -> tuple[int, float]:
    from bench.ingest import full_ingest

    started = time.perf_counter()
    records = sum(full_ingest(path) for path in paths)
    return records, time.perf_counter() - started


def run_catch_up(paths: list[Path], max_concurrency: int, start: datetime) -> dict:
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
            return_state=True,
        )
        wall = time.perf_counter() - started
        report = state.result()
    finally:
        api.uninstall()
        flow_logger.removeHandler(progress)
        os.environ["ETL_RAW_BUCKET"] = settings.raw_bucket
        delete_folder(s3, BENCH_BUCKET, folder)
    lineage, task_seconds = read_run_records(state.state_details.flow_run_id, len(paths))

    # A file the catch-up could not load (e.g. the API refused its task run) is reported, not hidden:
    # the rate counts loaded records only, over the whole wall time.
    failed = sorted(report["failed"])
    keys = [f"{folder}{path.name}" for path in paths if f"{folder}{path.name}" not in failed]
    if report["loaded_now"] != len(keys):
        raise SystemExit(f"the catch-up did not load every file it did not fail: {report}")
    missing = [k for k in keys if "transform" not in lineage.get(k, {}).get("steps", "") or k not in task_seconds]
    if missing:
        raise SystemExit(f"no lineage steps or no task run measured for {len(missing)} files, e.g. {missing[:3]}")
    work = [lineage[k]["seconds"] for k in keys]
    by_step: dict[str, float] = defaultdict(float)
    for k in keys:
        for part in lineage[k]["steps"].split(", "):
            step, seconds = part.rsplit(" ", 1)
            by_step[step] += float(seconds)
    overhead = [task_seconds[k] - lineage[k]["seconds"] for k in keys]
    processes = min(max_concurrency, len(paths))
    return {
        "wall_seconds": round(wall, 3),
        "max_concurrency": max_concurrency,
        "processes": processes,
        "files_loaded": report["loaded_now"],
        "files_failed": len(failed),
        "failures": {key.rsplit("/", 1)[-1]: progress.detail.get(key, "") for key in failed},
        "work_seconds_sum": round(sum(work), 3),
        "work_seconds_by_step": {k: round(v, 3) for k, v in sorted(by_step.items(), key=lambda kv: -kv[1])},
        "task_run_seconds_mean": round(statistics.mean(task_seconds[k] for k in keys), 4),
        "work_seconds_per_file_mean": round(statistics.mean(work), 4),
        "prefect_overhead_per_task_run": {
            "mean": round(statistics.mean(overhead), 4),
            "median": round(statistics.median(overhead), 4),
            "p95": round(sorted(overhead)[int(0.95 * (len(overhead) - 1))], 4),
        },
        # The form, wall time minus the sum of the ingest work, over the processes that share it.
        "wall_minus_work_per_file": round((wall * processes - sum(work)) / len(keys), 4),
        # The Prefect API calls of this process (the flow's own; the task runs in the pool report their
        # states as events, which this process forwards and counts), per file.
        "prefect_api": api.summary(len(keys)),
    }


def read_run_records(flow_run_id, files: int) -> tuple[dict[str, dict], dict[str, float]]:
    """The catch-up run's lineage rows by key (its `catch-up-lineage` artifact) and each ingest-object task
    run's duration by key, as the Prefect server recorded them (events arrive a moment after the run)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

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
            runs = [
                r
                for r in every
                if r.task_key.startswith("ingest_object")
                and r.state
                and r.state.is_final()
                and r.start_time
                and r.end_time
            ]
            if (artifacts and len(runs) >= files) or time.monotonic() > deadline:
                break
            time.sleep(1)
    data = artifacts[0].data if artifacts else "[]"
    rows = json.loads(data) if isinstance(data, str) else data
    prefix = "ingest "
    task_seconds = {r.name[len(prefix) :]: (r.end_time - r.start_time).total_seconds() for r in runs}
    return {row["key"]: row for row in rows}, task_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=168, help="hourly files (168: one week)")
    parser.add_argument("--records", type=int, default=500, help="records per file")
    parser.add_argument("--max-concurrency", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--floor-rounds", type=int, default=3, help="floor rounds (split before/after)")
    parser.add_argument("--no-serial", action="store_true", help="skip the serial no-Prefect reference")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/berlin-rentals-bench"))
    args = parser.parse_args()
    from deployments.demo import _load_env

    _load_env()
    from bench.ingest import use_bench_schema

    use_bench_schema()
    start = datetime(2019, 3, 4, tzinfo=UTC)
    paths = week_files(args.workdir, args.files, args.records, start)
    size = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} files, {args.files * args.records:,} records, {size / 1e6:.0f} MB zipped", flush=True)

    floors = []
    before = (args.floor_rounds + 1) // 2
    for _ in range(before):
        floors.append(floor_week(paths))
        print(f"  floor    {floors[-1][0] / floors[-1][1]:10,.0f} records/s", flush=True)
    serial = None
    if not args.no_serial:
        serial = serial_week(paths)
        print(f"  serial   {serial[0] / serial[1]:10,.0f} records/s (no Prefect, one process)", flush=True)
    catch = run_catch_up(paths, args.max_concurrency, start)
    records = args.files * args.records
    loaded_records = catch["files_loaded"] * args.records
    print(
        f"  catch-up {loaded_records / catch['wall_seconds']:10,.0f} records/s "
        f"({catch['wall_seconds']:.1f} s, max_concurrency {args.max_concurrency})",
        flush=True,
    )
    for _ in range(args.floor_rounds - before):
        floors.append(floor_week(paths))
        print(f"  floor    {floors[-1][0] / floors[-1][1]:10,.0f} records/s", flush=True)

    floor_records, floor_seconds = min(floors, key=lambda f: f[1])
    assert floor_records == records, (floor_records, records)
    floor_rate = records / floor_seconds
    catch_rate = loaded_records / catch["wall_seconds"]
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "files": args.files,
        "records_per_file": args.records,
        "records": records,
        "floor": {
            "seconds": round(floor_seconds, 4),
            "records_per_second": round(floor_rate, 1),
            "rounds": len(floors),
        },
        "catch_up": catch | {"records_per_second": round(catch_rate, 1)},
        "ratios": {"catch_up/floor": round(catch_rate / floor_rate, 4)},
    }
    # The least wall time any scheduler could reach with this work: the serial ingest's (no Prefect, no
    # other process competing), else the catch-up's own per-file work, spread evenly over every core.
    # A bound on the ratio, not a forecast.
    cores = os.cpu_count() or 1
    work_seconds = serial[1] if serial is not None else catch["work_seconds_per_file_mean"] * catch["files_loaded"]
    if work_seconds:
        done = records if serial is not None else loaded_records
        results["ratios"]["work_on_all_cores/floor"] = round(done / (work_seconds / cores) / floor_rate, 4)
    if serial is not None:
        results["serial_ingest"] = {"seconds": round(serial[1], 3), "records_per_second": round(records / serial[1], 1)}
        results["ratios"]["serial_ingest/floor"] = round(records / serial[1] / floor_rate, 4)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "catch_up.json").write_text(json.dumps(results, indent=2) + "\n")
    overhead = catch["prefect_overhead_per_task_run"]
    print()
    print(f"floor (one core)      {floor_rate:10,.0f} records/s  ({floor_seconds:.2f} s for the week)")
    if serial is not None:
        print(f"serial ingest         {records / serial[1]:10,.0f} records/s  ({serial[1]:.2f} s, no Prefect)")
    print(
        f"catch-up              {catch_rate:10,.0f} records/s  ({catch['wall_seconds']:.2f} s wall, "
        f"{args.max_concurrency} at once)"
    )
    print(f"catch-up/floor        {catch_rate / floor_rate:10.3f}x")
    if "work_on_all_cores/floor" in results["ratios"]:
        print(
            f"at best, this work spread perfectly over {cores} cores: "
            f"{results['ratios']['work_on_all_cores/floor']:.3f}x the floor"
        )
    if catch["files_failed"]:
        print(
            f"WARNING: {catch['files_failed']} file(s) failed in the catch-up (not counted in its rate): "
            f"{catch['failures']}"
        )
    print(
        f"per file: task run {catch['task_run_seconds_mean']:.3f} s, ingest work {catch['work_seconds_per_file_mean']:.3f} s, "
        f"Prefect overhead in the task run mean {overhead['mean']:.3f} s (median {overhead['median']:.3f}, "
        f"p95 {overhead['p95']:.3f})"
    )
    print(
        f"(wall x {catch['processes']} processes - sum of the work) per file: {catch['wall_minus_work_per_file']:.3f} s"
    )
    print(f"work by step (s, all files): {catch['work_seconds_by_step']}")
    api = catch["prefect_api"]
    print(
        f"Prefect API: {api['calls_per_file']} calls and {api['seconds_per_file']:.3f} s waiting per file, "
        f"{api['events_per_file']} events per file; slowest calls:"
    )
    for name, figure in list(api["slowest"].items())[:6]:
        print(f"  {figure['calls']:6} x {name:60} {figure['seconds']:8.2f} s")
    print(f"results: {RESULTS / 'catch_up.json'}")


if __name__ == "__main__":
    main()
