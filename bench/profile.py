"""Where the time goes: pyinstrument profiles of the full ingest of one file, and of a short catch-up.

    python -m bench.profile                  # both; text profiles in bench/results/profile_*.txt
    python -m bench.profile --what ingest    # the ingest of the 5,000-record file only (warm: run once first)

The ingest profile is of bench/ingest.py's `full_ingest` (transform, stage, load, ledger; no Prefect);
the catch-up profile is of bench/catch_up.py's run of the catch-up flow on the first `--files` files,
all threads, so Prefect's own work shows next to the ingest's.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def profile_ingest(workdir: Path, records: int) -> str:
    from pyinstrument import Profiler

    from bench.generate import write_batch
    from bench.ingest import full_ingest

    path = workdir / f"bench_{records}_real_20190201_00.zip"
    if not path.exists():
        write_batch(path, records, datetime(2019, 2, 1, tzinfo=UTC), first_id=300_000_000, seed=1)
    full_ingest(path)  # warm: imports, connections, the pool
    profiler = Profiler(interval=0.0005)
    profiler.start()
    full_ingest(path)
    profiler.stop()
    return profiler.output_text(unicode=True, color=False, show_all=False)


def profile_catch_up(workdir: Path, files: int) -> str:
    from pyinstrument import Profiler

    from bench.catch_up_run import run_catch_up
    from bench.week import week_files

    start = datetime(2019, 3, 4, tzinfo=UTC)
    paths = week_files(workdir, 168, 500, start)[:files]
    run_catch_up(paths[:2], 2, start)  # warm
    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    run_catch_up(paths, 2, start)
    profiler.stop()
    return profiler.output_text(unicode=True, color=False, show_all=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--what", choices=["ingest", "catch-up", "both"], default="both")
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--suffix", default="", help="appended to the output file names, e.g. _before")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/berlin-rentals-bench"))
    args = parser.parse_args()
    from devstack.demo import load_stack_env

    load_stack_env()
    args.workdir.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
    if args.what in ("ingest", "both"):
        out = RESULTS / f"profile_ingest{args.suffix}.txt"
        out.write_text(profile_ingest(args.workdir, args.records))
        print(out)
    if args.what in ("catch-up", "both"):
        out = RESULTS / f"profile_catch_up{args.suffix}.txt"
        out.write_text(profile_catch_up(args.workdir, args.files))
        print(out)


if __name__ == "__main__":
    main()
