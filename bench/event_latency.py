"""Upload → rows visible, through the whole event path, on the local stack (`make up` first).

Each upload is a fresh hourly batch (13 listings), put to the raw prefix and timed until its ledger
row says loaded (the row commits with the data). Uploads go one at a time, so each figure is one
file's latency, not queueing behind others.

    .venv/bin/python -m bench.event_latency --uploads 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from deployments.demo import _load_env, wait_for_ledger

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uploads", type=int, default=20)
    args = parser.parse_args()
    _load_env()
    from berlin_rentals.config import Settings
    from berlin_rentals.s3 import s3_client
    from berlin_rentals.source import normalize_etag
    from berlin_rentals.synthetic import batch_name, derived_batch, read_sample_records
    from tasks.common import warehouse_engine

    settings = Settings.from_env()
    s3, engine = s3_client(settings), warehouse_engine(settings.warehouse_url)
    records, folder = read_sample_records(), f"bench-{uuid.uuid4().hex[:6]}"
    base = datetime(2032, 1, 1, tzinfo=UTC) + timedelta(days=uuid.uuid4().int % 1000)
    latencies = []
    for n in range(args.uploads):
        hour = base + timedelta(hours=n)
        body = derived_batch(records, hour, rent_factor=1 + n / 100, modified=hour, seed=n, new_listings=2)
        key = f"{settings.raw_prefix}{folder}/{batch_name(hour)}.zip"
        t0 = time.perf_counter()
        etag = normalize_etag(s3.put_object(Bucket=settings.raw_bucket, Key=key, Body=body)["ETag"])
        row = wait_for_ledger(engine, settings.warehouse_schema, key, etag)
        if row is None or row.status != "loaded":
            raise SystemExit(f"{key} was not loaded ({row and row.status}): see .local/logs/")
        latencies.append(time.perf_counter() - t0)
        print(f"  [{n + 1:2d}/{args.uploads}] {key}: {latencies[-1]:.2f} s", flush=True)
    result = {
        "uploads": len(latencies),
        "p50_seconds": round(percentile(latencies, 0.50), 3),
        "p95_seconds": round(percentile(latencies, 0.95), 3),
        "min_seconds": round(min(latencies), 3),
        "max_seconds": round(max(latencies), 3),
        "mean_seconds": round(statistics.mean(latencies), 3),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "event_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\nupload → rows visible over {result['uploads']} uploads: p50 {result['p50_seconds']:.2f} s, "
        f"p95 {result['p95_seconds']:.2f} s (min {result['min_seconds']:.2f}, max {result['max_seconds']:.2f})"
    )


if __name__ == "__main__":
    main()
