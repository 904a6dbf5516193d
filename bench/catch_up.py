"""Catch-up of one week through the real catch-up flow, with and without its load batches, against the
single-core floor on the same files.

    make bench-catch-up        # make up, then: python -m bench.catch_up
    make bench-catch-up-month  # the same, then the batched catch-up once more over 720 files (--also-month)

One run, on the same 168 hourly files of 500 generated records (bench/generate.py):
  floor      inflate every member and split its lines, nothing else: one process, one core (the same
             code as bench/ingest.py's floor), best of the rounds before and after the catch-ups
  serial     the project's ingest work file after file, no Prefect (download, transform, stage, load,
             ledger), one process: what the catch-up's work alone costs
  batched    flows/catch_up.py's `catch_up` flow called in this process against the local Prefect
             server with `batch_max_files` 24 (ETL_BATCH_MAX_FILES, the default): `max_concurrency`
             stage-object task runs at once (default: the machine's cores), the staged files loaded 24
             at a time in load-batch task runs, one warehouse transaction each
  per file   the same flow with `batch_max_files` 1: an ingest-object task run per file, its own load
  month      with --also-month: the batched catch-up once more over 720 hourly files, to show its cost
             per file stays flat as the backfill grows
  Redshift   no cluster: the recording DB-API driver (tests/recording_dbapi.py) counts the COMMITs and
             statements the Redshift target sends loading the 168 files one per transaction
             (load_staged_batch) and in batches of 24 (load_staged_files), in this process

The files go to a bucket of their own (`rentals-bench-raw`, no S3 notification, so no event-driven
run races the catch-up) under a fresh folder per run, and every file gets a one-line extra member
naming the run: a new ETag each run, so the transform's ETag cache never answers for it (an extra
non-JSON member is ignored by the ingest; the records are the same). The serial reference loads the
week first, so both catch-ups merge the same records over rows already there (with --no-serial on a
fresh schema, the first catch-up is the only one that inserts them).

The catch-up runs each file's task run in a pool of processes, so the work is measured where it happens
and reported back with the file: its lineage row (the `catch-up-lineage` artifact the benchmark reads
from the API after the run) carries the seconds the file spent from HEAD to the end of its load, and
per step; in batched mode only up to its staged Parquet, the load being the batch's: the load-batch task
runs' durations as the Prefect server recorded them. Prefect overhead per file is reported two ways:
  - per task run: the per-file task run's duration as the Prefect server recorded it (start to end)
    minus the file's own work: what Prefect adds inside each task run;
  - the issue's form, wall time minus the sum of the work, spread over the processes:
    (wall x processes - sum of work) / files: every worker-second not spent in the ingest work (process
    start-up, submission, event forwarding, the listing and report tasks, idle), per file. In batched
    mode the work includes the load-batch task runs, which run in the catch-up's own process on the
    same cores as the pool.
And the bound the work sets: the work's seconds spread perfectly over every core, the best ratio to the
floor any scheduler could reach without making the work itself cheaper.
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

    folder = workdir / f"week_{files}x{records}_real"  # real-shaped: the unknown keys at their shares
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
            # (n, N, key, status, seconds, detail, the batch it loaded in): more may follow one day.
            key, status, seconds, detail = record.args[2:6]
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


def redshift_commits(path: Path, files: int, batch_max_files: int) -> dict:
    """COMMITs and statements the Redshift target sends for a backfill of `files` files, one per
    transaction (load_staged_batch, what a per-file load runs) and `batch_max_files` per transaction
    (load_staged_files, a load-batch's), recorded by tests/recording_dbapi.py in this process: no cluster,
    so counts, not seconds. Every file is `path` transformed once, under its own hour and ETag."""

    import sqlalchemy as sa

    import tests.recording_dbapi as driver
    from berlin_rentals.archive import iter_lines
    from berlin_rentals.model import STAGED_TABLES
    from berlin_rentals.staging import batch_manifest_key
    from berlin_rentals.transform import transform_lines
    from berlin_rentals.warehouse.engines import RedshiftTarget
    from berlin_rentals.warehouse.load import load_staged_batch, load_staged_files

    # As tests/test_redshift_batch_statements.py builds them (`_files`, `_recorded_batch`).
    target = RedshiftTarget("berlin_rentals", "arn:aws:iam::123456789012:role/rentals-redshift-copy")
    batch = transform_lines(iter_lines(path, path.name))
    every = driver.staged_files(batch, files)
    engine = sa.create_engine("redshift+redshift_connector://loader@cluster:5439/rentals", module=driver)
    with engine.connect():  # the dialect's first-connect queries, before the counting starts
        pass

    def count(statements) -> tuple[int, int]:
        sqls = [sql for sql, _ in statements]
        return sqls.count("COMMIT"), sum(sql not in ("COMMIT", "ROLLBACK") for sql in sqls)

    driver.STATEMENTS.clear()
    for f in every:
        load_staged_batch(engine, target, f.source, f.staged, f.stats, flow_run_id="bench")
    one_commits, one_statements = count(driver.STATEMENTS)

    batch_commits, per_batch = 0, []
    for first in range(0, files, batch_max_files):
        part, batch_id = every[first : first + batch_max_files], f"bench-{first}"
        # What a cluster would answer: nothing loaded yet in the ledger, the counts a row per file.
        answers = driver.batch_answers([f.source.etag for f in part])
        manifests = {t: f"s3://rentals-staging/{batch_manifest_key('clean/', batch_id, t)}" for t in STAGED_TABLES}
        driver.STATEMENTS.clear()
        driver._ANSWERS[:0] = answers
        try:
            report = load_staged_files(engine, target, part, batch_id=batch_id, manifests=manifests)
        finally:
            del driver._ANSWERS[: len(answers)]
        if len(report.loaded) != len(part):
            raise SystemExit(f"the recorded batch {batch_id} loaded {len(report.loaded)} of {len(part)} files")
        commits, statements = count(driver.STATEMENTS)
        batch_commits += commits
        per_batch.append(statements)
    driver.STATEMENTS.clear()
    return {
        "files": files,
        "batch_max_files": batch_max_files,
        "one_per_transaction": {
            "commits": one_commits,
            "commits_per_file": round(one_commits / files, 4),
            "statements_per_file": round(one_statements / files, 1),
        },
        "batched": {
            "commits": batch_commits,
            "commits_per_file": round(batch_commits / files, 4),
            "batches": len(per_batch),
            # The same statements whatever the batch's size: one COPY per table from its manifest.
            "statements_per_batch": sorted(set(per_batch)),
            "statements_per_file": round(sum(per_batch) / files, 2),
        },
    }


# Issue #5's target for the catch-up: records per second on two cores against the single-core floor.
TARGET_RATIO = 0.4
MONTH_FILES = 720
# The Redshift counts are for a week's backfill whatever --files says: recorded in-process, they cost little.
WEEK_FILES = 168


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=168, help="hourly files (168: one week)")
    parser.add_argument("--records", type=int, default=500, help="records per file")
    parser.add_argument("--max-concurrency", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--batch-max-files", type=int, help="files per load in the batched catch-up (default ETL_BATCH_MAX_FILES)"
    )
    parser.add_argument("--floor-rounds", type=int, default=3, help="floor rounds (split before/after)")
    parser.add_argument("--no-serial", action="store_true", help="skip the serial no-Prefect reference")
    parser.add_argument(
        "--also-month",
        action="store_true",
        help=f"then the batched catch-up once more over {MONTH_FILES} files: cost per file, week against month",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/berlin-rentals-bench"))
    args = parser.parse_args()
    from devstack.demo import load_stack_env

    load_stack_env()
    from bench.ingest import use_bench_schema
    from berlin_rentals.config import Settings

    use_bench_schema()
    batch_max_files = args.batch_max_files or Settings.from_env().batch_max_files
    if batch_max_files < 2:
        raise SystemExit("--batch-max-files must be at least 2 (1 is the per-file catch-up, measured anyway)")
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
    modes = {}
    for mode, files_per_load in (("batched", batch_max_files), ("per_file", 1)):
        modes[mode] = run_catch_up(paths, args.max_concurrency, start, files_per_load)
        catch = modes[mode]
        print(
            f"  {mode:8} {catch['files_loaded'] * args.records / catch['wall_seconds']:10,.0f} records/s "
            f"({catch['wall_seconds']:.1f} s, max_concurrency {args.max_concurrency}, batch_max_files {files_per_load})",
            flush=True,
        )
    for _ in range(args.floor_rounds - before):
        floors.append(floor_week(paths))
        print(f"  floor    {floors[-1][0] / floors[-1][1]:10,.0f} records/s", flush=True)
    month = None
    if args.also_month:
        # After the floor's last rounds: the month is an addition to the week's figures, not one of them.
        month_paths = week_files(args.workdir, MONTH_FILES, args.records, start)
        month = run_catch_up(month_paths, args.max_concurrency, start, batch_max_files)
        print(
            f"  month    {month['files_loaded'] * args.records / month['wall_seconds']:10,.0f} records/s "
            f"({month['wall_seconds']:.1f} s, {MONTH_FILES} files, batch_max_files {batch_max_files})",
            flush=True,
        )
    redshift = redshift_commits(paths[0], WEEK_FILES, batch_max_files)

    records = args.files * args.records
    floor_records, floor_seconds = min(floors, key=lambda f: f[1])
    assert floor_records == records, (floor_records, records)
    floor_rate = records / floor_seconds
    cores = os.cpu_count() or 1
    ratios = {}
    for mode, catch in (modes | {"month": month}).items():
        if catch is None:
            continue
        rate = catch["files_loaded"] * args.records / catch["wall_seconds"]
        catch["records_per_second"] = round(rate, 1)
        catch["floor_ratio"] = round(rate / floor_rate, 4)
        catch["target_met"] = catch["floor_ratio"] >= TARGET_RATIO
        # The least wall time this mode's own work allows on every core: a bound on its ratio, not a forecast.
        if catch["work_seconds_sum"]:
            bound = catch["files_loaded"] * args.records / catch["work_on_all_cores_seconds"]
            catch["work_on_all_cores/floor"] = round(bound / floor_rate, 4)
        ratios[f"{mode}/floor"] = catch["floor_ratio"]
    batched, per_file = modes["batched"], modes["per_file"]
    ratios["batched/per_file"] = round(batched["records_per_second"] / per_file["records_per_second"], 4)
    # The catch-up's own default is the batched one: the figure earlier runs reported as catch_up/floor.
    ratios["catch_up/floor"] = ratios["batched/floor"]
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": cores,
        "files": args.files,
        "records_per_file": args.records,
        "records": records,
        "target": f"catch-up >= {TARGET_RATIO}x the single-core floor on {cores} cores",
        "floor": {
            "seconds": round(floor_seconds, 4),
            "records_per_second": round(floor_rate, 1),
            "rounds": len(floors),
        },
        "batched": batched,
        "per_file": per_file,
        "ratios": ratios,
        "redshift_commits": redshift,
    }
    if month is not None:
        results["batched_month"] = month | {
            "files": MONTH_FILES,
            "per_file_cost/week": {
                "wall": round(month["wall_seconds_per_file"] / batched["wall_seconds_per_file"], 4),
                "work": round(month["work_seconds_per_file_mean"] / batched["work_seconds_per_file_mean"], 4),
            },
        }
    if serial is not None:
        # The least wall time any scheduler could reach with the per-file work: the serial ingest's (no
        # Prefect, no other process competing) spread evenly over every core.
        ratios["work_on_all_cores/floor"] = round(records / (serial[1] / cores) / floor_rate, 4)
        results["serial_ingest"] = {"seconds": round(serial[1], 3), "records_per_second": round(records / serial[1], 1)}
        ratios["serial_ingest/floor"] = round(records / serial[1] / floor_rate, 4)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "catch_up.json").write_text(json.dumps(results, indent=2) + "\n")

    print()
    print(f"floor (one core)      {floor_rate:10,.0f} records/s  ({floor_seconds:.2f} s for the week)")
    if serial is not None:
        print(f"serial ingest         {records / serial[1]:10,.0f} records/s  ({serial[1]:.2f} s, no Prefect)")
    for mode, label in (("batched", f"batches of {batch_max_files}"), ("per_file", "a load per file")):
        catch = modes[mode]
        verdict = "met" if catch["target_met"] else "missed"
        print(
            f"catch-up, {label:15} {catch['records_per_second']:10,.0f} records/s  {catch['floor_ratio']:.3f}x the floor "
            f"(target {TARGET_RATIO}x on {cores} cores: {verdict}), {catch['wall_seconds']:.2f} s wall"
        )
        print(
            f"    per file: {catch['wall_seconds_per_file']:.3f} s wall, {catch['work_seconds_per_file_mean']:.3f} s work; "
            f"{catch['load_transactions']} load transactions, {catch['load_seconds_sum']:.2f} s in loads"
            + (" (load-batch task runs)" if mode == "batched" else " (each file's load step)")
        )
        if "work_on_all_cores/floor" in catch:
            print(
                f"    at best, this work spread perfectly over {cores} cores: {catch['work_on_all_cores/floor']:.3f}x"
            )
        overhead = catch["prefect_overhead_per_task_run"]
        print(
            f"    per task run ({'stage-object' if mode == 'batched' else 'ingest-object'}): "
            f"{catch['task_run_seconds_mean']:.3f} s, Prefect overhead mean {overhead['mean']:.3f} s "
            f"(median {overhead['median']:.3f}, p95 {overhead['p95']:.3f}); "
            f"(wall x {catch['processes']} - work) per file {catch['wall_minus_work_per_file']:.3f} s"
        )
        print(f"    work by step (s, all files): {catch['work_seconds_by_step']}")
        api = catch["prefect_api"]
        print(
            f"    Prefect API: {api['calls_per_file']} calls and {api['seconds_per_file']:.3f} s waiting per file, "
            f"{api['events_per_file']} events per file"
        )
        if catch["files_failed"]:
            print(f"    WARNING: {catch['files_failed']} file(s) failed (not counted in the rate): {catch['failures']}")
    print(
        f"batched / per file    {ratios['batched/per_file']:10.2f}x the records/s "
        f"({per_file['load_transactions']} load transactions -> {batched['load_transactions']})"
    )
    if serial is not None:
        print(
            f"the serial work spread perfectly over {cores} cores: {ratios['work_on_all_cores/floor']:.3f}x the floor"
        )
    if month is not None:
        cost = results["batched_month"]["per_file_cost/week"]
        print(
            f"month ({MONTH_FILES} files), batched: {month['records_per_second']:,.0f} records/s, "
            f"{month['floor_ratio']:.3f}x the floor; per file {month['wall_seconds_per_file']:.3f} s wall "
            f"(week {batched['wall_seconds_per_file']:.3f}, x{cost['wall']:.2f}), "
            f"{month['work_seconds_per_file_mean']:.3f} s work (week {batched['work_seconds_per_file_mean']:.3f}, "
            f"x{cost['work']:.2f}); {month['load_transactions']} load transactions"
        )
        if month["files_failed"]:
            print(f"    WARNING: {month['files_failed']} file(s) failed in the month: {month['failures']}")
    one, many = redshift["one_per_transaction"], redshift["batched"]
    print(
        f"Redshift, {WEEK_FILES} files (recorded, no cluster): a transaction per file {one['commits']} COMMITs "
        f"({one['commits_per_file']:.3f} per file, {one['statements_per_file']} statements per file); "
        f"batches of {batch_max_files}: {many['commits']} COMMITs ({many['commits_per_file']:.3f} per file, "
        f"{'/'.join(map(str, many['statements_per_batch']))} statements per batch, "
        f"{many['statements_per_file']} per file)"
    )
    print(f"results: {RESULTS / 'catch_up.json'}")


if __name__ == "__main__":
    main()
