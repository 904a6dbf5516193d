"""What differs between PostgreSQL (local, tests) and Redshift (production). Everything else is shared SQL.

- getting rows into the staging tables: COPY FROM STDIN here, COPY FROM S3 Parquet with an IAM role there;
- claiming a ledger row: a lock on the key and ON CONFLICT row locks here, a table LOCK there (Redshift has
  no upsert), which also serialises whole loads there;
- newest wins in the fact MERGE: a condition inside the MERGE here, where loads run at once; stale rows
  deleted from the stage first there (its MERGE has no conditional clauses);
- recording a failure: the same difference.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.schema import CreateTable, DropTable

from berlin_rentals.model import STAGED_ETAG, STAGED_TABLES, column_names
from berlin_rentals.staging import StagedBatch
from berlin_rentals.warehouse.sql import statement, statements
from berlin_rentals.warehouse.tables import staging_table

_IAM_ROLE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
_S3_PREFIX = re.compile(r"^[A-Za-z0-9!_.*()/=-]{1,1024}$")
_COPY_ROWS = 5000
_STAGED_NAMES = frozenset(STAGED_TABLES)


class Target(Protocol):
    name: str
    fact_merge: str  # the SQL file that merges the staged facts

    def lock_dimensions(self, conn: sa.Connection) -> None: ...

    def create_staging_tables(self, conn: sa.Connection, tables: list[str]) -> None: ...
    def copy_into_staging(
        self, conn: sa.Connection, table: str, staged: StagedBatch, data: pa.Table | None
    ) -> None: ...
    def claim(self, conn: sa.Connection, params: dict[str, Any]) -> bool: ...

    # A batch of files in one transaction (berlin_rentals/warehouse/batch_load.py).
    def lock_batch(self, conn: sa.Connection) -> None: ...
    def copy_batch_into_staging(
        self, conn: sa.Connection, table: str, data: pa.Table | None, manifest_uri: str | None
    ) -> None: ...


def dialect_name(url: str | sa.URL) -> str:
    backend = sa.make_url(url).get_backend_name()
    if backend == "redshift":
        return "redshift"
    if backend == "postgresql":
        return "postgresql"
    raise ValueError(f"unsupported warehouse backend {backend!r}: use postgresql+psycopg:// or redshift+...://")


def _key_lock_name(params: dict[str, Any]) -> str:
    return f"berlin-rentals load {params['bucket']}/{params['key']}"


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
        self, conn: sa.Connection, table: str, staged: StagedBatch | None, data: pa.Table | None
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

    def claim(self, conn: sa.Connection, params: dict[str, Any]) -> bool:
        # Versions of one key load one at a time (the row lock below only orders loads of one version).
        conn.execute(statement("postgresql/lock_object_key.sql", self.schema), {"lock_key": _key_lock_name(params)})
        return conn.execute(statement("postgresql/claim_file.sql", self.schema), params).first() is not None

    def lock_dimensions(self, conn: sa.Connection) -> None:
        for stmt in statements("postgresql/lock_dimensions_for_restatement.sql", self.schema):
            conn.execute(stmt)

    def lock_batch(self, conn: sa.Connection) -> None:
        # Every key of the batch (as claim() locks one), then the tables it decides the newest version in.
        for path in ("postgresql/lock_batch_keys.sql", "postgresql/lock_tables_for_batch.sql"):
            for stmt in statements(path, self.schema):
                conn.execute(stmt)

    def copy_batch_into_staging(
        self, conn: sa.Connection, table: str, data: pa.Table | None, manifest_uri: str | None
    ) -> None:
        self.copy_into_staging(conn, table, None, data)


@dataclass
class RedshiftTarget:
    schema: str
    iam_role_arn: str | None
    name: str = "redshift"
    fact_merge: str = "merge/merge_into_fact_flats.sql"

    def lock_dimensions(self, conn: sa.Connection) -> None:
        """Nothing to do: the claim's LOCK on the ledger already holds every other load until this one ends."""

    def create_staging_tables(self, conn: sa.Connection, tables: list[str]) -> None:
        _recreate(conn, tables)

    def _role(self) -> str:
        role = self.iam_role_arn or ""
        if not _IAM_ROLE.match(role):
            raise ValueError("REDSHIFT_IAM_ROLE_ARN must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
        return role

    def copy_sql(self, table: str, staged: StagedBatch) -> str:
        """COPY reads the staged Parquet straight from S3 with the cluster's IAM role: no keys anywhere.

        COPY takes no bind parameters, so every piece is validated against a strict pattern first.
        """
        role = self._role()
        prefix = staged.table_prefix(table)
        if not _S3_PREFIX.match(prefix) or not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", staged.bucket):
            raise ValueError(f"refusing to COPY from an unexpected location s3://{staged.bucket}/{prefix}")
        template = statement("redshift/copy_stage_from_parquet.sql", self.schema).text
        return (
            template.replace("{table}", f"stage_{table}")
            .replace("{s3_uri}", f"s3://{staged.bucket}/{prefix}")
            .replace("{iam_role}", role)
        )

    def copy_into_staging(self, conn: sa.Connection, table: str, staged: StagedBatch, data: pa.Table | None) -> None:
        conn.exec_driver_sql(self.copy_sql(table, staged))

    def lock_batch(self, conn: sa.Connection) -> None:
        for stmt in statements("redshift/lock_load_ledger.sql", self.schema):
            conn.execute(stmt)

    def batch_copy_sql(self, table: str, manifest_uri: str) -> str:
        """One COPY of a table for a whole batch, from the manifest listing its files; validated as copy_sql."""
        role = self._role()
        match = re.match(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+)$", manifest_uri)
        if not match or not _S3_PREFIX.match(match.group(2)) or table not in _STAGED_NAMES:
            raise ValueError(f"refusing to COPY {table!r} from an unexpected manifest {manifest_uri!r}")
        template = statement("redshift/copy_stage_from_parquet_manifest.sql", self.schema).text
        return (
            template.replace("{table}", f"stage_{table}")
            .replace("{manifest_uri}", manifest_uri)
            .replace("{iam_role}", role)
        )

    def copy_batch_into_staging(
        self, conn: sa.Connection, table: str, data: pa.Table | None, manifest_uri: str | None
    ) -> None:
        if not manifest_uri:
            raise ValueError(f"a Redshift batch COPY of {table} needs its manifest")
        conn.exec_driver_sql(self.batch_copy_sql(table, manifest_uri))

    def claim(self, conn: sa.Connection, params: dict[str, Any]) -> bool:
        # Redshift enforces no unique keys: a table lock serialises claims instead.
        for stmt in statements("redshift/lock_load_ledger.sql", self.schema):
            conn.execute(stmt)
        row = conn.execute(statement("ledger/select_file_status.sql", self.schema), params).first()
        if row is None:
            conn.execute(statement("ledger/insert_file_loading.sql", self.schema), params)
            return True
        if row.status in ("loaded", "parked") and not params["force"]:
            return False
        conn.execute(statement("ledger/update_file_loading.sql", self.schema), params)
        return True


def target_for(url: str, schema: str, iam_role_arn: str | None = None) -> Target:
    if dialect_name(url) == "redshift":
        return RedshiftTarget(schema=schema, iam_role_arn=iam_role_arn)
    return PostgresTarget(schema=schema)
