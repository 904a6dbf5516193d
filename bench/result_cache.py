"""What the ETag cache costs and saves where every flow run is a new container. One run, figures.

    python -m bench.result_cache [--records 0 5000] [--rounds 3]      # 0: the real sample (11 records)

On ECS each flow run is a fresh task: a result persisted to the worker's local disk never hits again, so the
cache lives on S3 (prefect-aws's S3Bucket on the staging bucket under `results/`). This measures, with
Prefect's own ResultStore and serializer against a moto server over HTTP (started here), per file:

  transform, stage   what a hit of the transform-stage step saves (decode, reshape, fit; Parquet PUTs)
  pointer            what is persisted now (the Transformed pointer: staged prefix, rows, counts): its
                     bytes, the write every run pays, and the read a hit pays instead (GET + the HEAD
                     of the manifest that proves the Parquet is still there)
  read-back          what the PostgreSQL load pays on a hit to GET and decode the staged Parquet it would
                     otherwise COPY from memory (the COPY itself is the same either way)
  batch              the design this replaced, for comparison: the whole transformed Batch persisted

and the hit rate above which each saves time: write / (saved - read).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _moto(port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return server
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("moto server did not start")


def best(fn, rounds: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - started)
    return min(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, nargs="+", default=[0, 5000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    port = _free_port()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="eu-central-1")
    server = _moto(port)
    try:
        import boto3
        from prefect.results import ResultStore
        from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket

        from bench.generate import write_batch
        from berlin_rentals.archive import iter_lines
        from berlin_rentals.model import STAGED_TABLES
        from berlin_rentals.staging import Transformed, is_staged, read_staged_tables, stage_batch
        from berlin_rentals.synthetic import SAMPLE_ZIP
        from berlin_rentals.transform import transform_lines
        from berlin_rentals.warehouse.fit import fit_batch

        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="rentals-staging", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        bucket = S3Bucket(
            bucket_name="rentals-staging",
            bucket_folder="results",
            credentials=AwsCredentials(
                region_name="eu-central-1", aws_client_parameters=AwsClientParameters(endpoint_url=endpoint)
            ),
        )

        def fresh_store():  # like a new container's: nothing of a write kept in memory, a read is a real GET
            return ResultStore(result_storage=bucket, cache_result_in_memory=False)

        store = fresh_store()
        header = (
            f"{'records':>8} {'transform s':>11} {'stage s':>8} {'pointer B':>9} {'write s':>8} {'hit s':>7} "
            f"{'read-back s':>11} {'saved s':>8} {'break-even':>10} | {'batch MB':>8} {'write s':>8} {'break-even':>10}"
        )
        print(header)
        with tempfile.TemporaryDirectory() as workdir:
            for n, records in enumerate(args.records):
                if records:
                    path = write_batch(
                        Path(workdir) / f"b{n}.zip", records, datetime(2030, 1, 1, n, tzinfo=UTC), first_id=1, seed=n
                    )
                else:
                    path = SAMPLE_ZIP

                def run_transform(path=path):
                    return fit_batch(transform_lines(iter_lines(path, str(path), max_member_bytes=8 << 30)))

                transform_s, batch = best(run_transform, args.rounds)
                etag = f"bench{n}"
                stage_s, staged = best(
                    lambda batch=batch, etag=etag: stage_batch(
                        s3, batch, bucket="rentals-staging", staging_prefix="clean/", etag=etag
                    ),
                    args.rounds,
                )
                pointer = Transformed(staged=staged, stats=batch.stats)
                key = f"pointer-{n}"
                write_s, _ = best(lambda key=key, pointer=pointer: store.write(key=key, obj=pointer), args.rounds)

                def hit(key=key):
                    found = fresh_store().read(key).result
                    assert is_staged(s3, found.staged) and found.staged.data is None
                    return found

                hit_s, found = best(hit, args.rounds)
                assert found.staged.rows == staged.rows and found.stats == batch.stats
                pointer_bytes = s3.head_object(Bucket="rentals-staging", Key=f"results/{key}")["ContentLength"]
                read_back_s, tables = best(lambda staged=staged: read_staged_tables(s3, staged), args.rounds)
                assert set(tables) == set(STAGED_TABLES)
                saved = transform_s + stage_s - hit_s - read_back_s
                rate = write_s / saved if saved > 0 else float("inf")

                batch_key = f"batch-{n}"
                batch_write_s, _ = best(lambda k=batch_key, b=batch: store.write(key=k, obj=b), args.rounds)
                batch_read_s, _ = best(lambda k=batch_key: fresh_store().read(k).result, args.rounds)
                batch_bytes = s3.head_object(Bucket="rentals-staging", Key=f"results/{batch_key}")["ContentLength"]
                batch_saving = transform_s - batch_read_s
                batch_rate = batch_write_s / batch_saving if batch_saving > 0 else float("inf")
                print(
                    f"{batch.stats.lines_read:>8} {transform_s:>11.3f} {stage_s:>8.3f} {pointer_bytes:>9} "
                    f"{write_s:>8.3f} {hit_s:>7.3f} {read_back_s:>11.3f} {saved:>8.3f} {rate:>10.1%} | "
                    f"{batch_bytes / 1e6:>8.2f} {batch_write_s:>8.3f} {batch_rate:>10.1%}"
                )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
