"""The PostgreSQL load step both ways: COPY from the tables this process transformed, or from the staged
Parquet read back from S3 (what a hit of the transform-stage cache does). One run, figures.

    python -m bench.load_source [--records 0 5000] [--rounds 5]      # 0: the real sample (11 records)

Starts a local stack of its own (moto, PostgreSQL) in a temporary directory; each load goes into an empty
schema of its own (a reload of the same rows would measure the restatement instead), the two ways in
alternating order.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, nargs="+", default=[0, 5000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from devstack.local_stack import LocalStack

    stack = LocalStack(Path(tempfile.mkdtemp(prefix="bench-load-")), services=("s3", "postgres"))
    os.environ.update(stack.up())
    try:
        import sqlalchemy as sa

        from bench.generate import write_batch
        from berlin_rentals.archive import iter_lines
        from berlin_rentals.config import Settings
        from berlin_rentals.s3 import s3_client
        from berlin_rentals.source import SourceObject
        from berlin_rentals.staging import read_staged_tables, stage_batch
        from berlin_rentals.synthetic import SAMPLE_ZIP
        from berlin_rentals.transform import transform_lines
        from berlin_rentals.warehouse.ddl import create_warehouse
        from berlin_rentals.warehouse.engines import target_for
        from berlin_rentals.warehouse.fit import fit_batch
        from berlin_rentals.warehouse.load import load_staged_batch
        from tasks.common import warehouse_engine

        settings = Settings.from_env()
        engine = warehouse_engine(settings.warehouse_url)
        s3 = s3_client(settings)
        workdir = Path(tempfile.mkdtemp(prefix="bench-load-batches-"))
        for n, records in enumerate(args.records):
            path = (
                write_batch(workdir / f"b{n}.zip", records, datetime(2030, 1, 1, n, tzinfo=UTC), first_id=1, seed=n)
                if records
                else SAMPLE_ZIP
            )
            batch = fit_batch(transform_lines(iter_lines(path, str(path))))
            etag = uuid.uuid4().hex
            staged = stage_batch(
                s3, batch, bucket=settings.staging_bucket, staging_prefix=settings.staging_prefix, etag=etag
            )
            source = SourceObject(
                settings.raw_bucket, f"raw/bench/{path.name}", etag, path.stat().st_size, datetime.now(UTC)
            )
            times: dict[str, list[float]] = {"memory": [], "s3": []}
            for round_ in range(args.rounds):
                for way in ("memory", "s3") if round_ % 2 else ("s3", "memory"):
                    schema = f"bench_load_{uuid.uuid4().hex[:8]}"
                    create_warehouse(settings.warehouse_url, schema)
                    try:
                        started = time.perf_counter()
                        data = staged.data if way == "memory" else read_staged_tables(s3, staged)
                        report = load_staged_batch(
                            engine, target_for(settings.warehouse_url, schema), source, staged, batch.stats, data=data
                        )
                        times[way].append(time.perf_counter() - started)
                        assert report.status == "loaded", report
                    finally:
                        with engine.begin() as conn:
                            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
            memory, from_s3 = min(times["memory"]), min(times["s3"])
            print(
                f"{batch.stats.lines_read:>6} records: load from memory {memory:.3f} s, from the staged Parquet on "
                f"S3 {from_s3:.3f} s (+{from_s3 - memory:.3f} s; best of {args.rounds} each)"
            )
    finally:
        stack.down(save_s3=False)


if __name__ == "__main__":
    main()
