"""What differs between PostgreSQL (local, tests) and Redshift (production). Everything else is shared SQL.

- getting rows into the staging tables: COPY FROM STDIN here, COPY FROM S3 Parquet with an IAM role there;
- holding the load's keys: a lock per key here (loads of other keys run at once), a table LOCK on the
  ledger there (Redshift has no advisory locks and enforces no keys), which serialises whole loads there;
- newest wins in the fact MERGE: a condition inside the MERGE here, where loads run at once; stale rows
  deleted from the stage first there (its MERGE has no conditional clauses);
- recording a failure: the same difference.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.schema import CreateTable, DropTable

from berlin_rentals.model import STAGED_ETAG, STAGED_TABLES, column_names
from berlin_rentals.staging import StagedBatch
from berlin_rentals.warehouse.sql import statement, statements
from berlin_rentals.warehouse.tables import staging_table

IAM_ROLE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
_S3_PREFIX = re.compile(r"^[A-Za-z0-9!_.*()/=-]{1,1024}$")
_COPY_ROWS = 5000
_STAGED_NAMES = frozenset(STAGED_TABLES)


class Target(Protocol):
    name: str
    schema: str
    fact_merge: str  # the SQL file that merges the staged facts (berlin_rentals/warehouse/merge.py)

    def lock_keys(self, conn: sa.Connection, lock_keys: list[str]) -> None: ...
    def lock_dimensions(self, conn: sa.Connection) -> None: ...
    def lock_dimension_rows(self, conn: sa.Connection) -> None: ...

    def create_staging_tables(self, conn: sa.Connection, tables: list[str]) -> None: ...
    def copy_into_staging(
        self,
        conn: sa.Connection,
        table: str,
        staged: Sequence[StagedBatch],
        data: pa.Table | None,
        manifest_uri: str | None,
    ) -> None: ...


def dialect_name(url: str | sa.URL) -> str:
    backend = sa.make_url(url).get_backend_name()
    if backend == "redshift":
        return "redshift"
    if backend == "postgresql":
        return "postgresql"
    raise ValueError(f"unsupported warehouse backend {backend!r}: use postgresql+psycopg:// or redshift+...://")


def key_lock_name(bucket: str, key: str) -> str:
    """The name a load locks a key by (PostgreSQL's advisory lock, lock_load_keys.sql)."""
    return f"berlin-rentals load {bucket}/{key}"


def _recreate(conn: sa.Connection, tables: list[str]) -> None:
    # Temporary tables live as long as the session; a pooled session may still hold the last load's.
    for name in tables:
        table = staging_table(name)
        conn.execute(DropTable(table, if_exists=True))
        conn.execute(CreateTable(table))


@dataclass
class PostgresTarget:
    schema: str
    name: str = "postgresql"
    fact_merge: str = "postgresql/merge_into_fact_flats.sql"

    def create_staging_tables(self, conn: sa.Connection, tables: list[str]) -> None:
        _recreate(conn, tables)

    def copy_into_staging(
        self,
        conn: sa.Connection,
        table: str,
        staged: Sequence[StagedBatch],
        data: pa.Table | None,
        manifest_uri: str | None,
    ) -> None:
        if data is None:
            raise ValueError("PostgreSQL staging needs the staged table's data")
        if data.num_rows == 0:
            return
        columns = column_names(table)
        if STAGED_ETAG.name in data.column_names:  # staged data has it; a replay's or a test's own tables may not
            columns.append(STAGED_ETAG.name)
        # Every non-null value quoted, nulls bare: PostgreSQL's CSV COPY then tells NULL from ''.
        options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
        copy_sql = f"COPY stage_{table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)"
        driver = conn.connection.driver_connection
        with driver.cursor() as cursor:
            with cursor.copy(copy_sql) as copy:
                # In slices, so the CSV of a big batch never sits in memory whole.
                for part in data.select(columns).to_batches(max_chunksize=_COPY_ROWS):
                    buffer = io.BytesIO()
                    pacsv.write_csv(part, buffer, write_options=options)
                    copy.write(buffer.getbuffer())

    def lock_keys(self, conn: sa.Connection, lock_keys: list[str]) -> None:
        conn.execute(statement("postgresql/lock_load_keys.sql", self.schema), {"lock_keys": lock_keys})

    def lock_dimensions(self, conn: sa.Connection) -> None:
        for stmt in statements("postgresql/lock_dimensions_for_restatement.sql", self.schema):
            conn.execute(stmt)

    def lock_dimension_rows(self, conn: sa.Connection) -> None:
        for stmt in statements("postgresql/lock_dimension_rows.sql", self.schema):
            conn.execute(stmt)


@dataclass
class RedshiftTarget:
    schema: str
    iam_role_arn: str | None
    name: str = "redshift"
    fact_merge: str = "load/merge_into_fact_flats.sql"

    def lock_keys(self, conn: sa.Connection, lock_keys: list[str]) -> None:
        # Redshift enforces no unique keys and has no advisory locks: the ledger's table lock holds every
        # other load (and claim) until this one ends.
        for stmt in statements("redshift/lock_load_ledger.sql", self.schema):
            conn.execute(stmt)

    def lock_dimensions(self, conn: sa.Connection) -> None:
        """Nothing to do: lock_keys' LOCK on the ledger already holds every other load until this one ends."""

    def lock_dimension_rows(self, conn: sa.Connection) -> None:
        """Nothing to do, as for lock_dimensions."""

    def create_staging_tables(self, conn: sa.Connection, tables: list[str]) -> None:
        _recreate(conn, tables)

    def _role(self) -> str:
        role = self.iam_role_arn or ""
        if not IAM_ROLE.fullmatch(role):
            raise ValueError("REDSHIFT_IAM_ROLE_ARN must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
        return role

    def copy_sql(self, table: str, staged: StagedBatch) -> str:
        """COPY reads the staged Parquet straight from S3 with the cluster's IAM role: no keys anywhere.

        COPY takes no bind parameters, so every piece is validated against a strict pattern first.
        """
        role = self._role()
        prefix = staged.table_prefix(table)
        if not _S3_PREFIX.fullmatch(prefix) or not re.fullmatch(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", staged.bucket):
            raise ValueError(f"refusing to COPY from an unexpected location s3://{staged.bucket}/{prefix}")
        template = statement("redshift/copy_stage_from_parquet.sql", self.schema).text
        return (
            template.replace("{table}", f"stage_{table}")
            .replace("{s3_uri}", f"s3://{staged.bucket}/{prefix}")
            .replace("{iam_role}", role)
        )

    def batch_copy_sql(self, table: str, manifest_uri: str) -> str:
        """One COPY of a table for a whole batch, from the manifest listing its files; validated as copy_sql."""
        role = self._role()
        match = re.fullmatch(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+)$", manifest_uri)
        if not match or not _S3_PREFIX.fullmatch(match.group(2)) or table not in _STAGED_NAMES:
            raise ValueError(f"refusing to COPY {table!r} from an unexpected manifest {manifest_uri!r}")
        template = statement("redshift/copy_stage_from_parquet_manifest.sql", self.schema).text
        return (
            template.replace("{table}", f"stage_{table}")
            .replace("{manifest_uri}", manifest_uri)
            .replace("{iam_role}", role)
        )

    def copy_into_staging(
        self,
        conn: sa.Connection,
        table: str,
        staged: Sequence[StagedBatch],
        data: pa.Table | None,
        manifest_uri: str | None,
    ) -> None:
        """One COPY per table per load: from the manifest of the load's files, or (one file, no manifest
        written) from that file's own prefix."""
        if manifest_uri:
            conn.exec_driver_sql(self.batch_copy_sql(table, manifest_uri))
        elif len(staged) == 1:
            conn.exec_driver_sql(self.copy_sql(table, staged[0]))
        else:
            raise ValueError(f"a Redshift COPY of {table} for {len(staged)} files needs their manifest")


def target_for(url: str, schema: str, iam_role_arn: str | None = None) -> Target:
    if dialect_name(url) == "redshift":
        return RedshiftTarget(schema=schema, iam_role_arn=iam_role_arn)
    return PostgresTarget(schema=schema)
