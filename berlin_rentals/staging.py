"""The clean zone of the lake: each table of a batch as Parquet under a prefix keyed by the ETag."""

from __future__ import annotations

import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import botocore.exceptions
import pyarrow as pa
import pyarrow.parquet as pq

from berlin_rentals.batch import TRANSFORM_VERSION, Batch, TransformStats, output_variant
from berlin_rentals.model import STAGED_ETAG, STAGED_TABLES, staged_schema


@dataclass(frozen=True)
class StagedBatch:
    """Where a batch's tables lie in the staging bucket; enough for either engine to load them."""

    bucket: str
    # e.g. clean/v<transform version>-m<model fingerprint>-r…-n…[-masked-<salt id>][-keyed-<salt id>]/etag=<etag>/
    # (transform.output_variant); each table is <prefix><table>/part-00000.parquet
    prefix: str
    rows: dict[str, int] = field(default_factory=dict)
    # The staged tables themselves, in this process only (never compared, printed or part of the location):
    # the PostgreSQL load streams them through COPY instead of reading the Parquet back from S3.
    data: dict[str, pa.Table] | None = field(default=None, compare=False, repr=False)
    # Each table's Parquet size in bytes: a Redshift manifest of Parquet files must give every file's length.
    sizes: dict[str, int] = field(default_factory=dict)

    def __reduce__(self):
        # Pickled (Prefect's persisted result of the cached step, the catch-up's process pool) without the
        # tables: they are the batch itself, contacts and rejected raw lines included.
        return (type(self), (self.bucket, self.prefix, dict(self.rows), None, dict(self.sizes)))

    @property
    def manifest_key(self) -> str:
        return f"{self.prefix}_manifest.json"

    def table_prefix(self, table: str) -> str:
        return f"{self.prefix}{table}/"

    def table_key(self, table: str) -> str:
        return f"{self.table_prefix(table)}part-00000.parquet"

    def uri(self, table: str) -> str:
        return f"s3://{self.bucket}/{self.table_key(table)}"


def staged_prefix(staging_prefix: str, etag: str, variant: str | None = None) -> str:
    """Where a batch of this ETag made under `variant` (default: no salts) is staged: a batch of the same
    file made under another model or salt never overwrites it or is read in its place."""
    return f"{staging_prefix}{variant or output_variant()}/etag={etag}/"


def with_source_etag(table: pa.Table, etag: str) -> pa.Table:
    """The table with its file's ETag as the last column (model.STAGED_ETAG), as it is staged; a table that
    has the column already is returned as it is."""
    if STAGED_ETAG.name in table.column_names:
        return table
    return table.append_column(
        pa.field(STAGED_ETAG.name, STAGED_ETAG.arrow, nullable=True), pa.array([etag] * table.num_rows, pa.string())
    )


def parquet_bytes(table: pa.Table) -> bytes:
    # Snappy: the codec every Parquet reader, Redshift's COPY included, accepts.
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy")
    return buffer.getvalue()


def stage_batch(s3, batch: Batch, *, bucket: str, staging_prefix: str, etag: str) -> StagedBatch:
    """Write every table (even an empty one: COPY wants the prefix to exist), then the manifest.

    The tables are encoded and uploaded side by side (Parquet encoding and socket I/O release the GIL;
    a boto3 client is thread-safe); the manifest goes last, once every table is there.
    """
    prefix = staged_prefix(staging_prefix, etag, batch.variant)
    tables = {n: with_source_etag(batch.tables[n], etag) for n in STAGED_TABLES}
    sizes: dict[str, int] = {}
    staged = StagedBatch(
        bucket=bucket, prefix=prefix, rows={n: batch.rows(n) for n in STAGED_TABLES}, sizes=sizes, data=tables
    )

    def put(name: str) -> None:
        body = parquet_bytes(tables[name])
        s3.put_object(Bucket=bucket, Key=staged.table_key(name), Body=body)
        sizes[name] = len(body)

    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="stage") as pool:
        for done in [pool.submit(put, name) for name in STAGED_TABLES]:
            done.result()
    manifest = {
        "transform_version": TRANSFORM_VERSION,
        "variant": batch.variant,
        "etag": etag,
        "rows": staged.rows,
        "bytes": staged.sizes,
    }
    s3.put_object(Bucket=bucket, Key=staged.manifest_key, Body=json.dumps(manifest).encode())
    return staged


@dataclass(frozen=True)
class Transformed:
    """What the cached transform-stage step hands on, and what Prefect persists as its result: where the
    batch is staged and the transform's counts. A pointer of a few hundred bytes, nothing personal: the
    tables themselves stay in the staged Parquet (StagedBatch pickles without them)."""

    staged: StagedBatch
    stats: TransformStats


def is_staged(s3, staged: StagedBatch) -> bool:
    """Is the staged batch still there, every object of it? The manifest is written last, but it is not
    proof of its tables: the lifecycle expires objects by the day they were written, so a manifest written
    just after midnight outlives its tables by a day. One HEAD per object, side by side."""

    def present(key: str) -> bool:
        try:
            s3.head_object(Bucket=staged.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    keys = [staged.manifest_key, *(staged.table_key(name) for name in staged.rows)]
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="head-staged") as pool:
        return all(pool.map(present, keys))


def read_staged_tables(s3, staged: StagedBatch) -> dict[str, pa.Table]:
    """Every staged table back from S3, side by side as stage_batch wrote them (a GET is mostly waiting)."""
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="read-staged") as pool:
        return dict(
            zip(staged.rows, pool.map(lambda name: read_staged_table(s3, staged, name), staged.rows), strict=True)
        )


class StagedObjectMissing(LookupError):
    """A staged table is gone (expired, deleted) between the check that found it and its read. Retryable: the
    next attempt finds the batch not staged and transforms the file again; a missing staged object never
    parks a file."""


def read_staged_table(s3, staged: StagedBatch, table: str) -> pa.Table:
    try:
        body = s3.get_object(Bucket=staged.bucket, Key=staged.table_key(table))["Body"].read()
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            raise StagedObjectMissing(f"{staged.uri(table)} is gone: the file is transformed again") from exc
        raise
    result = pq.read_table(io.BytesIO(body))
    expected = staged_schema(table)
    if not result.schema.equals(expected, check_metadata=False):
        raise ValueError(f"{staged.uri(table)} does not have the schema of {table}: {result.schema}")
    return result


def batch_manifest_key(staging_prefix: str, batch_id: str, table: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", batch_id):
        raise ValueError(f"a batch id is letters, digits, '-' and '_': {batch_id!r}")
    return f"{staging_prefix}batches/{batch_id}/{table}.manifest"


def manifest_body(staged: list[StagedBatch], table: str) -> bytes:
    """A Redshift COPY manifest of one table's staged Parquet files. Every entry is mandatory (a missing file
    fails the COPY, never loads a batch short) and gives its content_length, which COPY wants for Parquet:
    the size stage_batch recorded (a batch only ever holds files staged by it)."""
    entries = [
        {"url": batch.uri(table), "mandatory": True, "meta": {"content_length": batch.sizes[table]}} for batch in staged
    ]
    return json.dumps({"entries": entries}).encode()


def write_batch_manifests(
    s3, staged: list[StagedBatch], *, bucket: str, staging_prefix: str, batch_id: str
) -> dict[str, str]:
    """Each table's manifest for a batch of staged files, in the staging bucket; their URIs by table."""
    uris = {}
    for table in STAGED_TABLES:
        key = batch_manifest_key(staging_prefix, batch_id, table)
        s3.put_object(Bucket=bucket, Key=key, Body=manifest_body(staged, table))
        uris[table] = f"s3://{bucket}/{key}"
    return uris
