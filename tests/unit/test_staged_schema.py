"""Every staged Parquet file has exactly the columns of its staging table, in order: Redshift's COPY of
Parquet maps by position and wants the counts equal (the transform's columns, then the row's file's ETag)."""

from __future__ import annotations

import io

import boto3
import pyarrow.parquet as pq

from berlin_rentals.archive import iter_lines
from berlin_rentals.model import STAGED_TABLES, staged_schema
from berlin_rentals.replay_lines import ReplayBatch, stage_replay
from berlin_rentals.staging import read_staged_table, stage_batch
from berlin_rentals.transform import transform_lines
from berlin_rentals.warehouse.fit import fit_batch
from berlin_rentals.warehouse.tables import staging_table

ETAG = "793fb4ae6d07bb5b55ea181ad1fed13a"


def _columns(s3, bucket: str, key: str) -> list[str]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return pq.read_schema(io.BytesIO(body)).names


def test_the_ingests_and_the_replays_staged_files_have_their_staging_tables_columns(in_process_aws, sample_zip):
    s3 = boto3.client("s3", region_name="eu-central-1")
    s3.create_bucket(Bucket="rentals-staging", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    batch = fit_batch(transform_lines(iter_lines(sample_zip, "sample.zip")))
    staged = stage_batch(s3, batch, bucket="rentals-staging", staging_prefix="clean/", etag=ETAG)
    replayed = stage_replay(
        s3, ReplayBatch((), batch), bucket="rentals-staging", staging_prefix="clean/", etag=ETAG, masked=False
    )
    for table in STAGED_TABLES:
        expected = [c.name for c in staging_table(table).columns]
        assert expected[-1] == "source_etag"
        for written in (staged, replayed):
            assert _columns(s3, "rentals-staging", written.table_key(table)) == expected, (written.prefix, table)
        assert read_staged_table(s3, staged, table).schema.equals(staged_schema(table), check_metadata=False)
        assert set(read_staged_table(s3, staged, table).column("source_etag").to_pylist()) <= {ETAG}
        # the sizes a Redshift manifest needs are those of the objects written
        head = s3.head_object(Bucket="rentals-staging", Key=staged.table_key(table))
        assert staged.sizes[table] == head["ContentLength"]
