"""Does the transform's ETag cache pay for itself where every flow run is a new container? One run, figures.

    python -m bench.result_cache [--records 500 50000] [--rounds 3]

On ECS each flow run is a fresh task: a result persisted to the worker's local disk (Prefect's default,
today's setting) never hits again. The cache only works across runs with shared result storage, prefect-aws's
S3Bucket on the staging bucket under `results/`. This measures, on generated files of each size, with
Prefect's own ResultStore and serializer against a moto server over HTTP (started here):

  transform   what a hit saves: decode, reshape and fit the batch (the download before it is not saved)
  write       what every run pays to persist the batch (serialize + PUT), hit or not
  read        what a hit pays instead of the transform (GET + deserialize)
  bytes       the persisted result's size

and prints the hit rate above which the cache saves time: write / (transform - read). A hit needs a second
run of a version already transformed whose first load failed (a forced rerun refreshes the cache by design).
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
    parser.add_argument("--records", type=int, nargs="+", default=[500, 50_000])
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
        from berlin_rentals.transform import transform_lines
        from berlin_rentals.warehouse.fit import fit_batch

        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(
            Bucket="rentals-staging", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
        )
        bucket = S3Bucket(
            bucket_name="rentals-staging",
            bucket_folder="results",
            credentials=AwsCredentials(
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
                region_name="eu-central-1",
                aws_client_parameters=AwsClientParameters(endpoint_url=endpoint),
            ),
        )
        # Like a new container's: nothing of the write kept in memory, so a read is a real GET.
        store = ResultStore(result_storage=bucket, cache_result_in_memory=False)
        s3 = boto3.client("s3", endpoint_url=endpoint)
        print(f"{'records':>8} {'transform s':>12} {'write s':>9} {'read s':>8} {'MB':>7} {'break-even hit rate':>20}")
        with tempfile.TemporaryDirectory() as workdir:
            for n, records in enumerate(args.records):
                path = write_batch(
                    Path(workdir) / f"b{n}.zip", records, datetime(2030, 1, 1, n, tzinfo=UTC), first_id=1, seed=n
                )

                def run_transform(path=path):
                    return fit_batch(transform_lines(iter_lines(path, str(path), max_member_bytes=8 << 30)))

                transform_s, batch = best(run_transform, args.rounds)
                key = f"bench-{records}"
                write_s, _ = best(lambda key=key, batch=batch: store.write(key=key, obj=batch), args.rounds)
                read_s, read = best(
                    lambda key=key: ResultStore(result_storage=bucket, cache_result_in_memory=False).read(key).result,
                    args.rounds,
                )
                assert read.tables["fact_flats"].equals(batch.tables["fact_flats"])
                size = s3.head_object(Bucket="rentals-staging", Key=f"results/{key}")["ContentLength"]
                saving = transform_s - read_s
                rate = write_s / saving if saving > 0 else float("inf")
                print(
                    f"{records:>8} {transform_s:>12.3f} {write_s:>9.3f} {read_s:>8.3f} {size / 1e6:>7.2f} {rate:>19.1%}"
                )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
