"""`make demo`: upload the sample batch and a few derived hours to the local stack, ingest each, show what landed.

Run after `make up` (the Makefile does both). Running it twice shows exactly-once: every file is skipped.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from berlin_rentals.config import read_env_file

ENV_FILE = Path(os.environ.get("ETL_ENV_FILE", ".local/env"))


def _load_env() -> None:
    # Before Prefect is imported: it reads PREFECT_API_URL once, at import.
    if not ENV_FILE.exists():
        sys.exit(f"{ENV_FILE} not found: run `make up` first")
    for key, value in read_env_file(ENV_FILE).items():
        os.environ.setdefault(key, value)


def demo_batches() -> list[tuple[str, bytes, str]]:
    """(file name, zip bytes, what it shows): the real sample, three later hours, one late arrival."""
    from berlin_rentals.synthetic import SAMPLE_ZIP, batch_name, derived_batch, read_sample_records

    records = read_sample_records()
    base = datetime(2019, 1, 13, 15, tzinfo=UTC)
    batches = [(SAMPLE_ZIP.name, SAMPLE_ZIP.read_bytes(), "the real sample batch")]
    for step, factor in ((1, 1.02), (2, 1.05), (3, 1.03)):
        hour = base + timedelta(hours=step)
        body = derived_batch(records, hour, rent_factor=factor, modified=hour - timedelta(minutes=20),
                             seed=step, new_listings=3 * step)
        batches.append((batch_name(hour) + ".zip", body, f"rents x{factor}, {3 * step} new listings"))
    late_hour = base - timedelta(hours=1)
    late = derived_batch(records, late_hour, rent_factor=0.97, modified=datetime(2019, 1, 10, tzinfo=UTC), seed=9)
    batches.append((batch_name(late_hour) + ".zip", late, "arrives late with older versions: history only"))
    batches.append((SAMPLE_ZIP.name, SAMPLE_ZIP.read_bytes(), "the sample again: same ETag, skipped"))
    return batches


def main() -> None:
    _load_env()
    import sqlalchemy as sa

    from berlin_rentals.config import Settings
    from berlin_rentals.s3 import s3_client
    from berlin_rentals.source import normalize_etag
    from flows.ingest import ingest_file
    from tasks.common import warehouse_engine

    settings = Settings.from_env()
    s3 = s3_client(settings)
    started = time.perf_counter()
    outcomes = []
    print(f"\n== uploading and ingesting {len(demo_batches())} batches into s3://{settings.raw_bucket}/{settings.raw_prefix}\n")
    for name, body, what in demo_batches():
        key = f"{settings.raw_prefix}{name}"
        etag = normalize_etag(s3.put_object(Bucket=settings.raw_bucket, Key=key, Body=body)["ETag"])
        t0 = time.perf_counter()
        state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
        result = state.result(raise_on_failure=False)
        seconds = time.perf_counter() - t0
        if isinstance(result, BaseException):
            outcomes.append((name, "FAILED", seconds, str(result), what))
        else:
            detail = (f"+{result.get('fact_inserted', 0)} new, {result.get('fact_updated', 0)} updated, "
                      f"{result.get('fact_stale', 0)} older kept as history, {result.get('rejected', 0)} rejected"
                      if result["status"] == "loaded" else result.get("ledger", ""))
            outcomes.append((name, result["status"], seconds, detail, what))

    schema = settings.warehouse_schema
    with warehouse_engine(settings.warehouse_url).connect() as conn:
        counts = {t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {schema}.{t}")).scalar_one()
                  for t in ("fact_flats", "flat_snapshots", "dim_address", "dim_city", "dim_agency",
                            "rejected_records", "load_ledger")}
        history = conn.execute(sa.text(
            f"SELECT batch_hour, base_rent FROM {schema}.flat_snapshots WHERE listing_id = 56906504 ORDER BY batch_hour"
        )).all()
        known = conn.execute(sa.text(
            f"""SELECT c.city, a.quarter, a.postcode, f.base_rent FROM {schema}.fact_flats f
                JOIN {schema}.dim_address a ON a.address_id = f.address_id
                JOIN {schema}.dim_city c ON c.city_id = a.city_id WHERE f.listing_id = 56906504""")).first()

    print(f"{'file':45} {'status':8} {'seconds':>7}  detail")
    for name, status, seconds, detail, what in outcomes:
        print(f"{name:45} {status:8} {seconds:7.2f}  {detail}  ({what})")
    loaded = sum(1 for o in outcomes if o[1] == "loaded")
    skipped = sum(1 for o in outcomes if o[1] == "skipped")
    failed = sum(1 for o in outcomes if o[1] == "FAILED")
    print(f"\nfiles: {loaded} loaded, {skipped} skipped, {failed} failed in {time.perf_counter() - started:.1f} s")
    print("\nrows per table in schema", schema)
    for table, count in counts.items():
        print(f"  {table:18} {count:6}")
    if known:
        print(f"\nlisting 56906504: {known.city} / {known.quarter} / {known.postcode}, current base rent {known.base_rent}")
        print("  rent history: " + ", ".join(f"{h:%Y-%m-%d %H:00} {r}" for h, r in history))
    ui = os.environ.get("PREFECT_UI_URL") or os.environ["PREFECT_API_URL"].removesuffix("/api")
    print(f"\nPrefect UI: {ui}/runs  (flow 'ingest-file'; each run has lineage artifacts: {ui}/artifacts)")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
