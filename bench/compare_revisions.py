"""The one-file ingest and the week's catch-up of two revisions, side by side in one run (issue #21).

    make bench-compare                  # make up, then: python -m bench.compare_revisions --base f60a9c6
    python -m bench.compare_revisions --records 1000 --files 24 --file-records 100 --rounds 2   # a quick check

Each revision runs its own benchmarks, `bench.ingest` (what `make bench-ingest` runs) and `bench.catch_up`
(`make bench-catch-up`), unchanged, in a subprocess of its own: the working directory and PYTHONPATH are
that revision's checkout (the base: a `git worktree` in .local/bench-base/<rev>, made once and reused;
the head: this checkout), the interpreter is this one's (.venv), and both are pointed at this checkout's
stack (`make up`, ETL_ENV_FILE=.local/env). Two things are changed from outside, by a few lines run before
the bench's own `main()`: `bench.ingest.BENCH_SCHEMA` (each revision loads into a warehouse schema of its
own, dropped at the start) and the module's `RESULTS` (its JSON goes to a scratch folder, not over the
checked-in bench/results/).

The same input bytes for both: the two revisions' generators differ (the head's adds the keys real
batches carry that the model does not read), so the files are generated once, by this checkout's
generator, and placed under the names each revision's bench looks for (which then finds them and
generates nothing); their SHA-256 is checked before and after each run, and a run that leaves a file
of its own in its folder (it generated instead) is an error.

Runs are interleaved, base then head, `--rounds` times for each bench; each run reports its own floor
(inflate and split lines) measured in that run. The table gives the best run of each revision (records/s,
higher is better), head/base, and each one's ratio to its own floor. Results: bench/results/compare_<base>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SCRATCH = ROOT / ".local" / "bench-base"
ENV_FILE = ROOT / ".local" / "env"
INGEST_HOUR = datetime(2019, 2, 1, tzinfo=UTC)  # as bench/ingest.py names and seeds its file
WEEK_START = datetime(2019, 3, 4, tzinfo=UTC)  # as bench/catch_up.py starts its week

# Where each revision's benches look for their files under --workdir (bench/ingest.py's main, week_files):
# the head's have `_real` (real-shaped lines), f60a9c6's do not.
NAMES = {
    "head": {"ingest": "bench_{records}_real_20190201_00.zip", "week": "week_{files}x{file_records}_real"},
    "base": {"ingest": "bench_{records}_20190201_00.zip", "week": "week_{files}x{file_records}"},
}

# Run in the subprocess, in the revision's checkout, before the bench's own main().
RUNNER = """
import importlib, sys
from pathlib import Path
module_name, schema, results = sys.argv[1:4]
import bench.ingest
bench.ingest.BENCH_SCHEMA = schema  # use_bench_schema() reads it when called, in both benches
module = importlib.import_module(module_name)
module.RESULTS = Path(results)
print("[compare] running", module.__file__, flush=True)
sys.argv = [module_name, *sys.argv[4:]]
module.main()
"""


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def base_checkout(rev: str) -> tuple[Path, str]:
    """A detached worktree of `rev` in .local/bench-base/<short sha>, made once and reused."""
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    path = SCRATCH / sha[:7]
    if path.exists():
        if git("rev-parse", "HEAD", cwd=path) != sha:
            raise SystemExit(f"{path} is not at {sha}: remove it (git worktree remove --force {path})")
    else:
        SCRATCH.mkdir(parents=True, exist_ok=True)
        git("worktree", "add", "--detach", str(path), sha)
    return path, sha


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def place(source: Path, target: Path) -> None:
    """`target` becomes the same bytes as `source` (a hard link where it can, else a copy)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def prepare_files(workdir: Path, args: argparse.Namespace) -> dict[str, list[Path]]:
    """Generate the ingest file and the week once (this checkout's generator, the benches' own ids and
    seeds) under the head's names, and place the same bytes under the base's. Returns each side's files,
    in the same order."""
    from bench.generate import write_batch
    from bench.week import week_files

    sizes = {"records": args.records, "files": args.files, "file_records": args.file_records}
    names = {side: {k: v.format(**sizes) for k, v in n.items()} for side, n in NAMES.items()}
    files: dict[str, list[Path]] = {"head": [], "base": []}
    if not args.skip_ingest:
        path = workdir / "head" / names["head"]["ingest"]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_batch(path, args.records, INGEST_HOUR, first_id=300_000_000, seed=1)
        files["head"].append(path)
        files["base"].append(workdir / "base" / names["base"]["ingest"])
    if not args.skip_catch_up:
        for path in week_files(workdir / "head", args.files, args.file_records, WEEK_START):
            files["head"].append(path)
            files["base"].append(workdir / "base" / names["base"]["week"] / path.name)
    for source, target in zip(files["head"], files["base"], strict=True):
        place(source, target)
    return files


def check_files(side: str, workdir: Path, files: list[Path], hashes: list[str]) -> None:
    """Every file still has the bytes both sides were given, and the bench made none of its own."""
    for path, expected in zip(files, hashes, strict=True):
        if sha256(path) != expected:
            raise SystemExit(f"{path} changed during the {side} run: not the same input any more")
    given = set(files)
    extra = sorted(str(p) for p in workdir.rglob("*") if p.is_file() and p not in given)
    if extra:
        raise SystemExit(f"the {side} bench generated files of its own instead of using the given ones: {extra[:5]}")


def drop_schemas(schemas: list[str]) -> None:
    import sqlalchemy as sa

    from berlin_rentals.config import read_env_file

    engine = sa.create_engine(read_env_file(ENV_FILE)["WAREHOUSE_URL"])
    with engine.begin() as conn:
        for schema in schemas:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def run_bench(side: dict, module: str, bench_args: list[str], label: str) -> dict:
    """One run of a revision's bench module in its own checkout; its results JSON."""
    out = side["scratch"] / label
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"PYTHONPATH": str(side["checkout"]), "ETL_ENV_FILE": str(ENV_FILE), "ETL_SAMPLE_ZIP": side["sample"]}
    command = [sys.executable, "-c", RUNNER, module, side["schema"], str(out), *bench_args]
    log = out / "output.log"
    started = time.perf_counter()
    with log.open("w") as stream:
        done = subprocess.run(command, cwd=side["checkout"], env=env, stdout=stream, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if done.returncode:
        print(log.read_text()[-4000:], file=sys.stderr)
        raise SystemExit(f"{label}: {module} of {side['rev'][:7]} failed ({done.returncode}); log {log}")
    ran = log.read_text().split("\n", 1)[0].removeprefix("[compare] running ")
    if Path(ran) != side["checkout"] / (module.replace(".", "/") + ".py"):  # its own code, nothing else
        raise SystemExit(f"{label}: ran {ran}, not {side['checkout']}'s {module}")
    name = "ingest.json" if module == "bench.ingest" else "catch_up.json"
    result = json.loads((out / name).read_text())
    result["_run_seconds"] = round(seconds, 1)
    return result


def ingest_figures(result: dict) -> dict[str, float]:
    paths = result["paths"]
    return {name: paths[name]["records_per_second"] for name in ("ingest", "transform", "seed", "floor")}


def catch_up_figures(result: dict) -> dict[str, float]:
    figures = {
        "batched": result["batched"]["records_per_second"],
        "per_file": result["per_file"]["records_per_second"],
        "floor": result["floor"]["records_per_second"],
    }
    if "serial_ingest" in result:
        figures["serial"] = result["serial_ingest"]["records_per_second"]
    failed = result["batched"]["files_failed"] + result["per_file"]["files_failed"]
    if failed:
        print(f"  WARNING: {failed} file(s) failed in this run (not counted in its records/s)", flush=True)
    return figures


ROWS = {
    "ingest": (
        ("ingest", "full ingest into PostgreSQL"),
        ("transform", "transform alone"),
        ("seed", "the seed's way (pandas)"),
        ("floor", "floor, same run"),
    ),
    "catch_up": (
        ("batched", "catch-up, batches (the default)"),
        ("per_file", "catch-up, a load per file"),
        ("serial", "serial ingest, no Prefect"),
        ("floor", "floor, same run"),
    ),
}
HEADLINE = {"ingest": "ingest", "catch_up": "batched"}


def summarise(bench: str, runs: dict[str, list[dict[str, float]]]) -> dict:
    """Best run of each revision per figure, head/base, each one's headline over its own floor, and the
    head/base of the headline paired run by run (round n of base against round n of head)."""
    best = {side: {k: max(r[k] for r in rs) for k in rs[0]} for side, rs in runs.items()}
    keys = [k for k, _ in ROWS[bench] if k in best["base"] and k in best["head"]]
    top = HEADLINE[bench]
    return {
        "best_records_per_second": best,
        "head/base": {k: round(best["head"][k] / best["base"][k], 3) for k in keys},
        "vs_own_floor": {side: round(best[side][top] / best[side]["floor"], 4) for side in best},
        "paired_head/base": [round(h[top] / b[top], 3) for b, h in zip(runs["base"], runs["head"], strict=True)],
        "runs": runs,
    }


def print_table(results: dict) -> None:
    base, head = results["base"]["rev"][:7], results["head"]["rev"][:7]
    width = 34
    print(f"\n{'records/s (best run)':{width}} {base + ' (base)':>16} {head + ' (head)':>16} {'head/base':>10}")
    for bench, title in (("ingest", "one file"), ("catch_up", "catch-up")):
        if bench not in results:
            continue
        summary, size = results[bench], results["sizes"][bench]
        print(f"{title}: {size}, best of {len(summary['runs']['base'])} runs each")
        best = summary["best_records_per_second"]
        for key, label in ROWS[bench]:
            if key in best["base"] and key in best["head"]:
                ratio = summary["head/base"][key]
                print(f"  {label:{width - 2}} {best['base'][key]:16,.0f} {best['head'][key]:16,.0f} {ratio:10.3f}")
        floor = summary["vs_own_floor"]
        print(f"  {HEADLINE[bench] + ' / its own floor':{width - 2}} {floor['base']:16.3f} {floor['head']:16.3f}")
        paired = ", ".join(f"{r:.3f}" for r in summary["paired_head/base"])
        print(f"  {HEADLINE[bench]} head/base run by run: {paired}")
    for bench, top in HEADLINE.items():
        if bench in results:
            ratio = results[bench]["head/base"][top]
            verdict = "no slower" if ratio >= 1 else f"{(1 - ratio) * 100:.1f}% slower"
            print(f"{bench}: the head is {verdict} than the base ({top}, best run against best run: {ratio:.3f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="f60a9c6", help="the revision to compare this checkout against")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each revision per bench, interleaved")
    parser.add_argument("--records", type=int, default=5000, help="the one-file bench's records")
    parser.add_argument("--ingest-rounds", type=int, default=5, help="bench.ingest's own --rounds in each run")
    parser.add_argument("--files", type=int, default=168, help="the catch-up's hourly files (168: one week)")
    parser.add_argument("--file-records", type=int, default=500, help="records per catch-up file")
    parser.add_argument(
        "--catch-up-args", default="", help="more flags for both revisions' bench.catch_up, e.g. '--no-serial'"
    )
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-catch-up", action="store_true")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/berlin-rentals-bench-compare"))
    args = parser.parse_args()
    if not ENV_FILE.exists():
        raise SystemExit(f"{ENV_FILE} not found: run `make up` first")
    from berlin_rentals.synthetic import sample_zip

    checkout, base_sha = base_checkout(args.base)
    head_sha = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    sides = {
        "base": {"rev": base_sha, "checkout": checkout},
        "head": {"rev": head_sha, "checkout": ROOT, "uncommitted_changes": dirty},
    }
    for name, side in sides.items():
        side |= {
            "schema": f"berlin_rentals_bench_{name}_{side['rev'][:7]}",
            "scratch": SCRATCH / "runs" / name,
            "workdir": args.workdir / name,
            "sample": str(sample_zip()),
        }
    print(f"base {base_sha[:7]} in {checkout}; head {head_sha[:7]} in {ROOT}" + (" (uncommitted changes)" * dirty))
    shutil.rmtree(args.workdir, ignore_errors=True)
    files = prepare_files(args.workdir, args)
    hashes = [sha256(path) for path in files["head"]]
    print(f"{len(hashes)} input files, the same bytes for both (SHA-256 checked before and after each run)")
    drop_schemas([side["schema"] for side in sides.values()])

    sizes, results = {}, {}
    benches = []
    if not args.skip_ingest:
        bench_args = ["--records", str(args.records), "--rounds", str(args.ingest_rounds), "--rss-records", "0"]
        sizes["ingest"] = f"{args.records:,} records, best of {args.ingest_rounds} rounds in each run"
        benches.append(("ingest", "bench.ingest", bench_args, ingest_figures))
    if not args.skip_catch_up:
        bench_args = ["--files", str(args.files), "--records", str(args.file_records)]
        bench_args += shlex.split(args.catch_up_args)
        sizes["catch_up"] = f"{args.files} files x {args.file_records:,} records"
        benches.append(("catch_up", "bench.catch_up", bench_args, catch_up_figures))
    started = time.perf_counter()
    for bench, module, bench_args, figures in benches:
        runs: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
        for round_ in range(args.rounds):
            for name, side in sides.items():  # base, then head, every round
                label = f"{bench}_{round_ + 1}"
                result = run_bench(side, module, [*bench_args, "--workdir", str(side["workdir"])], label)
                check_files(name, side["workdir"], files[name], hashes)
                runs[name].append(figures(result))
                top = runs[name][-1][HEADLINE[bench]]
                print(
                    f"  {bench:8} round {round_ + 1} {name} {side['rev'][:7]}: {top:10,.0f} records/s "
                    f"(floor {runs[name][-1]['floor']:,.0f}; run {result['_run_seconds']:.0f} s)",
                    flush=True,
                )
        results[bench] = summarise(bench, runs)
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "seconds": round(time.perf_counter() - started, 1),
        "base": {k: str(v) for k, v in sides["base"].items()},
        "head": {k: str(v) for k, v in sides["head"].items()},
        "sizes": sizes,
        "rounds": args.rounds,
        "input_sha256": {path.name: digest for path, digest in zip(files["head"], hashes, strict=True)},
        **results,
    }
    print_table(results)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"compare_{base_sha[:7]}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out} ({timedelta(seconds=round(results['seconds']))} of runs)")


if __name__ == "__main__":
    main()
