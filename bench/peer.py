"""A peer beside the project: dlt (what a user would pick instead) on the same files into the same PostgreSQL.

    make bench-peer        # make up, then: uv run --group bench python -m bench.peer

The files: `--files` hourly batches of `--records` real-shaped listings each (bench/generate.py, the unknown
keys at their real shares), as a backfill would meet them. In one run, on the same files:
  floor         inflate and split the lines, nothing else (bench.ingest.floor)
  project       the project's backfill: the `catch-up` flow over the files (bench.catch_up.run_catch_up:
                against the stack's Prefect server, a stage-object task run a file in a pool of processes,
                loads of 24 files a transaction), as a user runs it
  project serial  its ingest work file after file in one process, no Prefect (bench.ingest.full_ingest)
  dlt default   dlt 1.31's pipeline with its defaults, merging on the listing id, as the project does
                (exactly once per listing): records read with json.loads, dlt infers, normalizes and loads
  dlt fastest   the same merge with dlt's fastest settings here: CSV files COPYed into PostgreSQL, two
                normalize workers, larger buffers
Each dlt run loads into a dataset of its own, dropped first. Prints records per second, each way's ratio to
the floor and the project's ratio to each dlt way; results in bench/results/peer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DLT_WAYS = {
    "dlt default": {},
    "dlt fastest": {
        "loader_file_format": "csv",
        "NORMALIZE__WORKERS": "2",
        "DATA_WRITER__BUFFER_MAX_ITEMS": "50000",
    },
}


def records_of(paths: list[Path]) -> Iterator[dict]:
    """Every listing of the files, as a user's dlt resource would read them: the `data` of each ok line."""
    for path in paths:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                with archive.open(member) as lines:
                    for line in lines:
                        record = json.loads(line)
                        if record.get("ok") and record.get("data"):
                            yield record["data"]


def dlt_load(paths: list[Path], warehouse_url: str, dataset: str, settings: dict[str, str]) -> int:
    import dlt
    import sqlalchemy as sa

    url = sa.make_url(warehouse_url).set(drivername="postgresql")
    # dlt insists on a password; the local stack's loader logs in by trust, which ignores one.
    url = url.set(password=url.password or "unused-by-trust-auth")
    engine = sa.create_engine(warehouse_url)
    with engine.begin() as conn:  # a dataset name of ours: an identifier, never input
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {dataset} CASCADE")
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {dataset}_staging CASCADE")
    engine.dispose()
    file_format = settings.get("loader_file_format")
    for name, value in settings.items():
        if name.isupper():
            os.environ[name] = value
    try:
        with tempfile.TemporaryDirectory(prefix="dlt-bench-") as pipelines_dir:
            pipeline = dlt.pipeline(
                pipeline_name=dataset,
                destination=dlt.destinations.postgres(credentials=url.render_as_string(hide_password=False)),
                dataset_name=dataset,
                pipelines_dir=pipelines_dir,
            )
            resource = dlt.resource(records_of(paths), name="listings", write_disposition="merge", primary_key="id")
            info = pipeline.run(resource, loader_file_format=file_format)
            info.raise_on_failed_jobs()
            return sum(1 for _ in records_of(paths))
    finally:
        for name in settings:
            if name.isupper():
                os.environ.pop(name, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/berlin-rentals-bench"))
    args = parser.parse_args()
    from bench.catch_up_run import run_catch_up
    from bench.ingest import floor, full_ingest, use_bench_schema
    from bench.week import week_files
    from berlin_rentals.config import Settings
    from devstack.demo import load_stack_env

    load_stack_env()
    use_bench_schema()
    warehouse_url = Settings.from_env().warehouse_url
    start = datetime(2019, 3, 1, tzinfo=UTC)
    paths = week_files(args.workdir, args.files, args.records, start)
    print(
        f"{len(paths)} files of {args.records} real-shaped listings ({sum(p.stat().st_size for p in paths) / 1e6:.1f} MB)"
    )

    def catch_up() -> int:
        run = run_catch_up(paths, os.cpu_count() or 1, start, batch_max_files=24)
        return run["files_loaded"] * args.records

    ways = {
        "floor": lambda: sum(floor(p) for p in paths),
        "project": catch_up,
        "project serial": lambda: sum(full_ingest(p) for p in paths),
    } | {
        name: (lambda n=name, s=settings: dlt_load(paths, warehouse_url, n.replace(" ", "_") + "_bench", s))
        for name, settings in DLT_WAYS.items()
    }
    rates = {}
    for name, run in ways.items():
        started = time.perf_counter()
        records = run()
        seconds = time.perf_counter() - started
        rates[name] = records / seconds
        print(f"  {name:14} {records:7,} records in {seconds:7.2f} s: {rates[name]:9,.0f} records/s", flush=True)
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": args.files,
        "records_per_file": args.records,
        "records_per_second": {name: round(rate, 1) for name, rate in rates.items()},
        "vs_floor": {name: round(rate / rates["floor"], 4) for name, rate in rates.items()},
        "project_vs": {name: round(rates["project"] / rates[name], 2) for name in DLT_WAYS},
        "project_serial_vs": {name: round(rates["project serial"] / rates[name], 2) for name in DLT_WAYS},
    }
    print()
    for name, ratio in results["vs_floor"].items():
        print(f"{name:14} {ratio:8.4f}x the floor")
    for name in DLT_WAYS:
        print(
            f"project / {name}: {results['project_vs'][name]:.2f}x "
            f"(project serial / {name}: {results['project_serial_vs'][name]:.2f}x)"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "peer.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {RESULTS / 'peer.json'}")


if __name__ == "__main__":
    main()
