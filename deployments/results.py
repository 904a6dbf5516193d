"""Create or update the S3Bucket block the ingest's transform-stage step persists its results to; idempotent.

    python -m deployments.results      # ETL_RESULTS_BLOCK (s3-bucket/berlin-rentals-results)

The block points at the staging bucket under ETL_RESULTS_PREFIX (`results/`, which the staging lifecycle
expires) and holds no keys: boto3 finds them itself (the ECS task role; locally moto's dummy keys from
.local/env), and AWS_ENDPOINT_URL, when set (moto), is the one client parameter. `make up` runs it; in
production run it once per Prefect server with the tasks' settings. A block that already says the same is
left alone (a save would leave another anonymous credentials block behind each time).
"""

from __future__ import annotations

from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket

from berlin_rentals.config import ResultsBlockSettings


def results_block(settings: ResultsBlockSettings) -> S3Bucket:
    return S3Bucket(
        bucket_name=settings.staging_bucket,
        bucket_folder=settings.results_prefix.rstrip("/"),
        credentials=AwsCredentials(
            region_name=settings.aws_region,
            aws_client_parameters=AwsClientParameters(endpoint_url=settings.aws_endpoint_url),
        ),
    )


def _same(a: S3Bucket, b: S3Bucket) -> bool:
    def view(block: S3Bucket) -> tuple:
        credentials = block.credentials
        return (
            block.bucket_name,
            block.bucket_folder,
            credentials.region_name,
            credentials.aws_access_key_id,
            credentials.aws_client_parameters.endpoint_url,
        )

    return view(a) == view(b)


def ensure_results_block(settings: ResultsBlockSettings) -> tuple[str, bool]:
    """(block name, whether it was written): the block for these settings, saved under ETL_RESULTS_BLOCK."""
    name = settings.results_block.removeprefix("s3-bucket/")
    wanted = results_block(settings)
    try:
        if _same(S3Bucket.load(name), wanted):
            return name, False
    except ValueError:  # no such block yet
        pass
    wanted.save(name, overwrite=True)
    return name, True


def main() -> None:
    settings = ResultsBlockSettings.from_env()
    name, written = ensure_results_block(settings)
    where = f"s3://{settings.staging_bucket}/{settings.results_prefix}"
    print(f"result storage block s3-bucket/{name}: {where} ({'saved' if written else 'unchanged'})")


if __name__ == "__main__":
    main()
