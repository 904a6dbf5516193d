"""Records per second, side by side in one run, on the same generated file; peak memory of a big ingest.

    make bench          # make up, then: python -m bench.ingest

Paths, each timed `--rounds` times interleaved (best round counts, as the machine is shared and noisy):
  floor      unzip the members and split the lines, nothing else (chunked reads, the fastest plain way)
  seed       json.loads per line, pandas.json_normalize, gzip CSV of three tables (no load)
  transform  this project's transform alone (archive → Arrow tables)
  ingest     this project's full ingest into PostgreSQL: transform, stage Parquet to S3, load, ledger
Then the peak RSS of the full ingest of one 50,000-record file (~1.1 GB of JSON) in a child process.
Results go to bench/results/ingest.json and bench/results/ingest.png.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def floor(path: Path) -> int:
    """The least any ingest must do: inflate every member and split it into lines, in 1 MiB reads."""
    count = 0
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            with archive.open(member) as stream:
                rest = b""
                while chunk := stream.read(1 << 20):
                    lines = (rest + chunk).split(b"\n")
                    rest = lines.pop()
                    count += sum(1 for line in lines if line.strip())
                count += bool(rest.strip())
    return count


def seed_way(path: Path) -> int:
    import pandas as pd

    with zipfile.ZipFile(path) as archive:
        rows = [json.loads(line)["data"] for member in archive.infolist()
                for line in archive.open(member) if line.strip()]
    frame = pd.json_normalize(rows)
    tables = {
        "flats": [c for c in frame.columns if c.startswith("realEstate_") and "address" not in c] + ["id"],
        "address": [c for c in frame.columns if c.startswith("realEstate_address")],
        "agency": [c for c in frame.columns if c.startswith("contactDetails_")] + ["companyWideCustomerId"],
    }
    for columns in tables.values():
        frame[columns].to_csv(io.BytesIO(), compression="gzip", index=False)
    return len(rows)


def transform_only(path: Path) -> int:
    from berlin_rentals.archive import iter_lines
    from berlin_rentals.transform import transform_lines

    return transform_lines(iter_lines(path, path.name)).stats.lines_read


def full_ingest(path: Path) -> int:
    """Everything the ingest flow does except Prefect: transform, stage, load (one transaction), ledger."""
    from berlin_rentals.archive import iter_lines
    from berlin_rentals.config import Settings
    from berlin_rentals.s3 import s3_client
    from berlin_rentals.source import SourceObject
    from berlin_rentals.staging import stage_batch
    from berlin_rentals.transform import transform_lines
    from berlin_rentals.warehouse.engines import target_for
    from berlin_rentals.warehouse.load import load_staged_batch
    from tasks.common import warehouse_engine

    settings = Settings.from_env()
    s3 = s3_client(settings)
    etag = uuid.uuid4().hex  # a fresh version each round: nothing is skipped
    source = SourceObject(settings.raw_bucket, f"{settings.raw_prefix}bench/{path.name}", etag,
                          path.stat().st_size, datetime.now(UTC))
    batch = transform_lines(iter_lines(path, source.uri))
    staged = stage_batch(s3, batch, bucket=settings.staging_bucket, staging_prefix=settings.staging_prefix, etag=etag)
    del batch
    data = staged.data  # as tasks/load.py does: COPY the tables this process staged, no read-back from S3
    target = target_for(settings.warehouse_url, settings.warehouse_schema)
    from berlin_rentals.transform import TransformStats

    report = load_staged_batch(warehouse_engine(settings.warehouse_url), target, source, staged,
                               TransformStats(lines_read=staged.rows["fact_flats"]), data=data, force=True)
    assert report.status == "loaded"
    return staged.rows["fact_flats"] + staged.rows["rejected_records"]


PATHS = {"floor": floor, "seed": seed_way, "transform": transform_only, "ingest": full_ingest}


def measure(path: Path, rounds: int) -> dict[str, dict[str, float]]:
    best: dict[str, float] = {}
    records: dict[str, int] = {}
    for round_ in range(rounds):
        for name, run in PATHS.items():
            started = time.perf_counter()
            records[name] = run(path)
            elapsed = time.perf_counter() - started
            best[name] = min(best.get(name, elapsed), elapsed)
            print(f"  round {round_ + 1} {name:9} {records[name] / elapsed:10,.0f} records/s", flush=True)
    return {name: {"records": records[name], "seconds": round(best[name], 4),
                   "records_per_second": round(records[name] / best[name], 1)} for name in PATHS}


def vm_hwm_kib() -> int:
    """This process's own peak RSS (VmHWM of its address space), in KiB.

    Not getrusage's ru_maxrss: Linux carries the parent's peak into a child across fork and exec
    (subprocess forks with vfork), so a child started after the seed's path (pandas, ~600 MiB) would
    report the parent's peak, not its own.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def peak_rss_child(path: Path) -> float:
    """Full ingest in a fresh interpreter; its own peak RSS in MiB."""
    code = ("import sys; from pathlib import Path; from bench.ingest import full_ingest, vm_hwm_kib; "
            "full_ingest(Path(sys.argv[1])); print(vm_hwm_kib())")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                          env=os.environ.copy())
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def chart(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["paths"])
    rates = [results["paths"][n]["records_per_second"] for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bars = ax.barh(names, rates, color=["#999999", "#cc7a00", "#3a78b5", "#2a9d55"])
    ax.bar_label(bars, labels=[f"{r:,.0f}/s" for r in rates], padding=3)
    ax.invert_yaxis()
    ax.set_xlabel("records per second (higher is better)")
    ax.set_title(f"One file of {results['records']:,} records, best of {results['rounds']} rounds")
    ax.set_xlim(0, max(rates) * 1.25)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


BENCH_SCHEMA = "berlin_rentals_bench"


def use_bench_schema() -> None:
    """Load into a schema of the benchmarks' own, so `make demo` and queries on the stack's schema never
    see the benchmarks' hundreds of thousands of generated rows."""
    from berlin_rentals.config import Settings
    from berlin_rentals.warehouse.ddl import create_warehouse

    os.environ["WAREHOUSE_SCHEMA"] = BENCH_SCHEMA
    create_warehouse(Settings.from_env().warehouse_url, BENCH_SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rss-records", type=int, default=50_000, help="0 skips the peak-memory run")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/berlin-rentals-bench"))
    args = parser.parse_args()
    from deployments.demo import _load_env
    from bench.generate import write_batch

    _load_env()
    use_bench_schema()
    args.workdir.mkdir(parents=True, exist_ok=True)
    hour = datetime(2019, 2, 1, tzinfo=UTC)
    path = args.workdir / f"bench_{args.records}_20190201_00.zip"
    if not path.exists():
        write_batch(path, args.records, hour, first_id=300_000_000, seed=1)
    print(f"file: {path} ({path.stat().st_size / 1e6:.1f} MB zipped, {args.records:,} records)")
    paths = measure(path, args.rounds)
    rate = {name: value["records_per_second"] for name, value in paths.items()}
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "cpu_count": os.cpu_count(),
        "records": args.records, "rounds": args.rounds, "paths": paths,
        "ratios": {"ingest/floor": round(rate["ingest"] / rate["floor"], 3),
                   "ingest/seed": round(rate["ingest"] / rate["seed"], 3),
                   "transform/floor": round(rate["transform"] / rate["floor"], 3)},
    }
    if args.rss_records:
        big = args.workdir / f"bench_{args.rss_records}_20190201_01.zip"
        if not big.exists():
            write_batch(big, args.rss_records, hour, first_id=400_000_000, seed=2)
        results["peak_rss_mib"] = {"records": args.rss_records, "mib": round(peak_rss_child(big), 1)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results, RESULTS / "ingest.png")
    print()
    for name, value in paths.items():
        print(f"{name:10} {value['records_per_second']:10,.0f} records/s  ({value['seconds']:.3f} s)")
    for name, value in results["ratios"].items():
        print(f"{name:16} {value:6.2f}x")
    if "peak_rss_mib" in results:
        print(f"peak RSS, full ingest of {args.rss_records:,} records: {results['peak_rss_mib']['mib']:.0f} MiB")
    print(f"results: {RESULTS / 'ingest.json'}, chart: {RESULTS / 'ingest.png'}")


if __name__ == "__main__":
    main()
