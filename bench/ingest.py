"""Records per second, side by side in one run, on the same generated file; peak memory of a big ingest.

    make bench          # make up, then: python -m bench.ingest

Paths, each timed `--rounds` times interleaved (best round counts, as the machine is shared and noisy):
  floor      unzip the members and split the lines, nothing else (chunked reads, the fastest plain way)
  seed       json.loads per line, pandas.json_normalize, gzip CSV of three tables (no load)
  transform  this project's transform alone (archive → Arrow tables)
  ingest     this project's full ingest into PostgreSQL: transform, stage Parquet to S3, load, ledger
Then where the ingest's time goes, per record, from parts timed in the same rounds (inflate alone, the
split into lines, a JSON scan that builds nothing, the decode of the model's fields, row building, staging,
the load), and what that work allows: even spread perfectly over both cores, the ingest cannot beat
(sum of the parts) / 2, whatever the code around it does.
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

import msgspec

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
        rows = [
            json.loads(line)["data"] for member in archive.infolist() for line in archive.open(member) if line.strip()
        ]
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


def full_ingest(path: Path, steps: dict[str, float] | None = None) -> int:
    """Everything the ingest flow does except Prefect: transform, stage, load (one transaction), ledger.

    `steps`, when given, receives the seconds of the transform, the staging and the load.
    """
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
    source = SourceObject(
        settings.raw_bucket, f"{settings.raw_prefix}bench/{path.name}", etag, path.stat().st_size, datetime.now(UTC)
    )
    started = time.perf_counter()
    batch = transform_lines(iter_lines(path, source.uri))
    transformed = time.perf_counter()
    staged = stage_batch(s3, batch, bucket=settings.staging_bucket, staging_prefix=settings.staging_prefix, etag=etag)
    del batch
    staged_at = time.perf_counter()
    data = staged.data  # as tasks/load.py does: COPY the tables this process staged, no read-back from S3
    target = target_for(settings.warehouse_url, settings.warehouse_schema)
    from berlin_rentals.batch import TransformStats

    report = load_staged_batch(
        warehouse_engine(settings.warehouse_url),
        target,
        source,
        staged,
        TransformStats(lines_read=staged.rows["fact_flats"]),
        data=data,
        force=True,
    )
    assert report.status == "loaded"
    if steps is not None:
        steps.update(
            transform=transformed - started, stage=staged_at - transformed, load=time.perf_counter() - staged_at
        )
    return staged.rows["fact_flats"] + staged.rows["rejected_records"]


PATHS = {"floor": floor, "seed": seed_way, "transform": transform_only, "ingest": full_ingest}


def inflate_only(path: Path) -> int:
    """Inflate every member in 1 MiB reads and look at nothing: the part of the floor no parser can skip.

    Returns the bytes inflated."""
    inflated = 0
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            with archive.open(member) as stream:
                while chunk := stream.read(1 << 20):
                    inflated += len(chunk)
    return inflated


def read_lines(path: Path) -> int:
    """The ingest's own reader (inflate, split, bomb and line-length checks), no parsing. Returns the lines."""
    from berlin_rentals.archive import iter_lines

    return sum(1 for _ in iter_lines(path, path.name))


class _Nothing(msgspec.Struct):
    pass


class _BareLine(msgspec.Struct):
    ok: bool | None = None
    data: _Nothing | None = None


def json_scan(lines: list[bytes]) -> int:
    """msgspec walking each line end to end and building nothing: the least any JSON decode costs.

    Returns the lines that have a `data` object."""
    decode = msgspec.json.Decoder(_BareLine).decode
    return sum(decode(raw).data is not None for raw in lines)


def decode_fields(lines: list[bytes]) -> int:
    """This project's decode of each line: the model's fields, typed, and the unknown-key check.

    Returns the lines decoded (all of a generated file's: a rejected line raises)."""
    from berlin_rentals.decode import LineDecoder

    decode = LineDecoder().decode
    for raw in lines:
        decode(raw)
    return len(lines)


# The parts of the ingest, each timed alone; `budget` turns them into time per record.
PART_PATHS = {"inflate": inflate_only, "read_lines": read_lines}
LINE_PATHS = {"json_scan": json_scan, "decode": decode_fields}


def measure(path: Path, rounds: int) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Best round of each path, and the best round of each part of the ingest (seconds)."""
    from berlin_rentals.archive import iter_lines

    lines = [line.raw for line in iter_lines(path, path.name)]
    best: dict[str, float] = {}
    records: dict[str, int] = {}
    parts: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        parts[name] = min(parts.get(name, seconds), seconds)

    for round_ in range(rounds):
        for name, run in PATHS.items():
            steps: dict[str, float] = {}
            started = time.perf_counter()
            records[name] = run(path, steps) if run is full_ingest else run(path)
            elapsed = time.perf_counter() - started
            best[name] = min(best.get(name, elapsed), elapsed)
            for step, seconds in steps.items():
                keep(step, seconds)
            print(f"  round {round_ + 1} {name:9} {records[name] / elapsed:10,.0f} records/s", flush=True)
        for name, part in PART_PATHS.items():
            started = time.perf_counter()
            part(path)
            keep(name, time.perf_counter() - started)
        for name, part in LINE_PATHS.items():
            started = time.perf_counter()
            part(lines)
            keep(name, time.perf_counter() - started)
    paths = {
        name: {
            "records": records[name],
            "seconds": round(best[name], 4),
            "records_per_second": round(records[name] / best[name], 1),
        }
        for name in PATHS
    }
    return paths, parts


# The parts that are Python bytecode from end to end; inflate, Parquet encoding, socket I/O and the
# PostgreSQL server's own work run without the GIL (or in another process) and could overlap them.
_HOLDS_THE_GIL = (
    "split into lines",
    "JSON scan (builds nothing)",
    "decode the model's fields",
    "build rows and Arrow tables",
)


def budget(parts: dict[str, float], records: int, floor_seconds: float) -> dict:
    """Microseconds per record for each part of the ingest, and the most its sum allows on two cores.

    Each part is the best of its rounds, taken as the difference of nested paths: the split is the
    ingest's reader less inflate alone, the field decode is the decode less the bare JSON scan, row
    building is the transform (as timed inside the full ingest) less the reader and the decode. A bound, not a forecast: it assumes every
    part could run beside every other with no cost for handing data over, which the GIL does not allow.
    """
    us = 1e6 / records
    rows = {
        "inflate": parts["inflate"],
        "split into lines": parts["read_lines"] - parts["inflate"],
        "JSON scan (builds nothing)": parts["json_scan"],
        "decode the model's fields": parts["decode"] - parts["json_scan"],
        "build rows and Arrow tables": parts["transform"] - parts["read_lines"] - parts["decode"],
        "stage Parquet to S3": parts["stage"],
        "load into PostgreSQL": parts["load"],
    }
    per_record = {name: round(seconds * us, 1) for name, seconds in rows.items()}
    total = sum(rows.values())
    cores = os.cpu_count() or 1
    return {
        "us_per_record": per_record,
        "sum_us_per_record": round(total * us, 1),
        "floor_us_per_record": round(floor_seconds * us, 1),
        "target_us_per_record": round(floor_seconds * us / 0.7, 1),
        "cores": cores,
        "best_on_all_cores_vs_floor": round(floor_seconds / (total / cores), 3),
        "unskippable_us_per_record": round((rows["inflate"] + rows["JSON scan (builds nothing)"]) * us, 1),
        # Python code holding the GIL: one thread of one process at a time, however many threads there are.
        "python_bound_us_per_record": round(sum(rows[name] for name in _HOLDS_THE_GIL) * us, 1),
    }


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
    code = (
        "import sys; from pathlib import Path; from bench.ingest import full_ingest, vm_hwm_kib; "
        "full_ingest(Path(sys.argv[1])); print(vm_hwm_kib())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True, env=os.environ.copy()
    )
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
    from bench.generate import write_batch
    from devstack.demo import load_stack_env

    load_stack_env()
    use_bench_schema()
    args.workdir.mkdir(parents=True, exist_ok=True)
    hour = datetime(2019, 2, 1, tzinfo=UTC)
    path = args.workdir / f"bench_{args.records}_real_20190201_00.zip"  # the unknown keys at their shares
    if not path.exists():
        write_batch(path, args.records, hour, first_id=300_000_000, seed=1)
    print(f"file: {path} ({path.stat().st_size / 1e6:.1f} MB zipped, {args.records:,} records)")
    paths, parts = measure(path, args.rounds)
    rate = {name: value["records_per_second"] for name, value in paths.items()}
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "records": args.records,
        "rounds": args.rounds,
        "paths": paths,
        "ratios": {
            "ingest/floor": round(rate["ingest"] / rate["floor"], 3),
            "ingest/seed": round(rate["ingest"] / rate["seed"], 3),
            "transform/floor": round(rate["transform"] / rate["floor"], 3),
        },
        "budget": budget(parts, paths["ingest"]["records"], paths["floor"]["seconds"]),
    }
    if args.rss_records:
        big = args.workdir / f"bench_{args.rss_records}_real_20190201_01.zip"
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
    spent = results["budget"]
    print("\nwhere the ingest's time goes, microseconds per record (best round of each part):")
    for name, value in spent["us_per_record"].items():
        print(f"  {name:30} {value:7.1f}")
    print(f"  {'sum':30} {spent['sum_us_per_record']:7.1f}")
    print(
        f"the floor takes {spent['floor_us_per_record']:.1f}; 0.7x the floor allows {spent['target_us_per_record']:.1f}; "
        f"inflate and a bare JSON scan alone take {spent['unskippable_us_per_record']:.1f}"
    )
    print(
        f"this work spread perfectly over {spent['cores']} cores: {spent['best_on_all_cores_vs_floor']:.2f}x the floor at best; "
        f"its Python-only parts, which hold the GIL, take {spent['python_bound_us_per_record']:.1f} on one core"
    )
    if "peak_rss_mib" in results:
        print(f"peak RSS, full ingest of {args.rss_records:,} records: {results['peak_rss_mib']['mib']:.0f} MiB")
    print(f"results: {RESULTS / 'ingest.json'}, chart: {RESULTS / 'ingest.png'}")


if __name__ == "__main__":
    main()
