"""What a step's task run costs, beside what a file's staging costs, in one run on the local stack.

    make bench-task-runs        # make up, then: python -m bench.task_runs

Every step of the pipeline is a Prefect task run, in the ingest-file flow and inside the catch-up's
stage-object alike (one retry table, Prefect's own engine; no inline re-implementation of it). That
costs Prefect's bookkeeping per step. Measured here, interleaved in one flow run:
  task run   an IO_STEP task that does nothing, called as a task (its run's state events, its logs)
  call       the same function called directly: what any inline helper would cost at best
  staging    run_ingest up to the staged Parquet (inspect-source, extract, transform-stage: three task
             runs), on generated files shaped as real batches are, each transformed (no cache hit)
and prints the three steps' task-run cost as a share of a file's staging.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

STEPS_PER_STAGED_FILE = 3  # inspect-source, extract, transform-stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=12, help="files staged (each its own upload and ETag)")
    parser.add_argument("--records", type=int, default=300, help="records per file")
    parser.add_argument("--calls", type=int, default=100, help="no-op calls, as task runs and direct")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/berlin-rentals-bench"))
    args = parser.parse_args()
    from devstack.demo import load_stack_env

    load_stack_env()
    from prefect import flow, task

    from bench.ingest import use_bench_schema
    from bench.week import week_files
    from berlin_rentals.config import Settings
    from berlin_rentals.ingest_result import STAGED
    from berlin_rentals.s3 import s3_client
    from flows.ingest import run_ingest
    from tasks.common import IO_STEP

    use_bench_schema()
    settings = Settings.from_env()
    s3 = s3_client(settings)
    folder = uuid.uuid4().hex[:8]
    uploads = []
    for path in week_files(args.workdir, args.files, args.records, datetime(2019, 5, 6, tzinfo=UTC)):
        key = f"{settings.raw_prefix}bench-{folder}/{path.name}"
        etag = s3.put_object(Bucket=settings.raw_bucket, Key=key, Body=path.read_bytes())["ETag"].strip('"')
        uploads.append((key, etag))

    def nothing(n: int) -> int:
        return n

    step = task(name="no-op-step", **IO_STEP)(nothing)

    @flow(name="bench-task-runs")
    def measure() -> dict[str, list[float]]:
        figures: dict[str, list[float]] = {"task run": [], "call": [], "staging": []}
        for n in range(args.calls):
            for name, call in (("task run", step), ("call", nothing)):
                begun = time.perf_counter()
                call(n)
                figures[name].append(time.perf_counter() - begun)
        for n, (key, etag) in enumerate(uploads):
            begun = time.perf_counter()
            staged = run_ingest(
                settings, settings.raw_bucket, key, etag, False, f"bench-{folder}-{n}", until_staged=True
            )
            figures["staging"].append(time.perf_counter() - begun)
            if staged.status != STAGED:
                raise SystemExit(f"{key}: {staged.status} {staged.error}")
        return figures

    figures = measure()
    task_run = statistics.median(figures["task run"])
    call = statistics.median(figures["call"])
    staging = statistics.median(figures["staging"])
    print(f"{args.files} files of {args.records} records, {args.calls} no-op calls each way, one flow run")
    print(f"  task run  {task_run * 1e3:8.2f} ms median (p90 {_p90(figures['task run']) * 1e3:.2f} ms)")
    print(f"  call      {call * 1e3:8.4f} ms median")
    print(f"  staging   {staging * 1e3:8.1f} ms median per file ({STEPS_PER_STAGED_FILE} task runs)")
    share = STEPS_PER_STAGED_FILE * (task_run - call) / staging
    print(
        f"  the staging's task runs cost {STEPS_PER_STAGED_FILE * (task_run - call) * 1e3:.1f} ms a file: {share:.1%}"
    )


def _p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


if __name__ == "__main__":
    main()
