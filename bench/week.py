"""The files of a benchmark backfill: a week (or month) of generated hourly batches, uploaded afresh per run.

Shared by bench/catch_up.py, bench/peer.py, bench/task_runs.py and bench/profile.py.
"""

from __future__ import annotations

import io
import time
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

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
