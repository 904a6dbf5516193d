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
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from bench.catch_up_run import run_catch_up
from bench.redshift_commits import redshift_commits
from bench.week import floor_week, serial_week, week_files

RESULTS = Path(__file__).resolve().parent / "results"
# Issue #5's target for the catch-up: records per second on two cores against the single-core floor.
TARGET_RATIO = 0.4
MONTH_FILES = 720
# The Redshift counts are for a week's backfill whatever --files says: recorded in-process, they cost little.
WEEK_FILES = 168


def main() -> None:
    args = _arguments()
    from devstack.demo import load_stack_env

    load_stack_env()
    from bench.ingest import use_bench_schema
    from berlin_rentals.config import Settings

    use_bench_schema()
    batch_max_files = args.batch_max_files or Settings.from_env().batch_max_files
    if batch_max_files < 2:
        raise SystemExit("--batch-max-files must be at least 2 (1 is the per-file catch-up, measured anyway)")
    results = _results(args, batch_max_files, **_measure(args, batch_max_files))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "catch_up.json").write_text(json.dumps(results, indent=2) + "\n")
    _print_results(results, batch_max_files)


def _arguments() -> argparse.Namespace:
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
    return parser.parse_args()


def _measure(args: argparse.Namespace, batch_max_files: int) -> dict:
    """Every path on the same files, in one run: the floor's rounds split before and after the catch-ups."""
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

    return {"floors": floors, "serial": serial, "modes": modes, "month": month, "redshift": redshift}


def _results(args: argparse.Namespace, batch_max_files: int, floors, serial, modes, month, redshift) -> dict:
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
    return results


def _print_results(results: dict, batch_max_files: int) -> None:
    floor_rate, floor_seconds = results["floor"]["records_per_second"], results["floor"]["seconds"]
    records, cores, ratios = results["records"], results["cpu_count"], results["ratios"]
    batched, per_file = results["batched"], results["per_file"]
    serial = results.get("serial_ingest")
    print()
    print(f"floor (one core)      {floor_rate:10,.0f} records/s  ({floor_seconds:.2f} s for the week)")
    if serial is not None:
        print(
            f"serial ingest         {records / serial['seconds']:10,.0f} records/s  ({serial['seconds']:.2f} s, no Prefect)"
        )
    for mode, label in (("batched", f"batches of {batch_max_files}"), ("per_file", "a load per file")):
        _print_mode(mode, label, results[mode], cores)
    print(
        f"batched / per file    {ratios['batched/per_file']:10.2f}x the records/s "
        f"({per_file['load_transactions']} load transactions -> {batched['load_transactions']})"
    )
    if serial is not None:
        print(
            f"the serial work spread perfectly over {cores} cores: {ratios['work_on_all_cores/floor']:.3f}x the floor"
        )
    month = results.get("batched_month")
    if month is not None:
        cost = month["per_file_cost/week"]
        print(
            f"month ({MONTH_FILES} files), batched: {month['records_per_second']:,.0f} records/s, "
            f"{month['floor_ratio']:.3f}x the floor; per file {month['wall_seconds_per_file']:.3f} s wall "
            f"(week {batched['wall_seconds_per_file']:.3f}, x{cost['wall']:.2f}), "
            f"{month['work_seconds_per_file_mean']:.3f} s work (week {batched['work_seconds_per_file_mean']:.3f}, "
            f"x{cost['work']:.2f}); {month['load_transactions']} load transactions"
        )
        if month["files_failed"]:
            print(f"    WARNING: {month['files_failed']} file(s) failed in the month: {month['failures']}")
    one, many = results["redshift_commits"]["one_per_transaction"], results["redshift_commits"]["batched"]
    print(
        f"Redshift, {WEEK_FILES} files (recorded, no cluster): a transaction per file {one['commits']} COMMITs "
        f"({one['commits_per_file']:.3f} per file, {one['statements_per_file']} statements per file); "
        f"batches of {batch_max_files}: {many['commits']} COMMITs ({many['commits_per_file']:.3f} per file, "
        f"{'/'.join(map(str, many['statements_per_batch']))} statements per batch, "
        f"{many['statements_per_file']} per file)"
    )
    print(f"results: {RESULTS / 'catch_up.json'}")


def _print_mode(mode: str, label: str, catch: dict, cores: int) -> None:
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
        print(f"    at best, this work spread perfectly over {cores} cores: {catch['work_on_all_cores/floor']:.3f}x")
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


if __name__ == "__main__":
    main()
