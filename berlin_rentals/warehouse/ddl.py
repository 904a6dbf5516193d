"""Create the warehouse schema and tables (idempotent). `python -m berlin_rentals.warehouse.ddl --print redshift` shows the DDL."""

from __future__ import annotations

import argparse

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from berlin_rentals.warehouse.access import Access, create_access
from berlin_rentals.warehouse.sql import statements
from berlin_rentals.warehouse.tables import warehouse_metadata

# PostgreSQL's indexes beside the primary keys (Redshift has none), created if missing: on new and old warehouses.
INDEXES = "postgresql/create_source_key_indexes.sql"


def make_engine(url: str) -> sa.Engine:
    # pool_pre_ping: a worker that idled through a database restart gets a fresh connection.
    from berlin_rentals.errors import watch_for_lost_connections

    return watch_for_lost_connections(sa.create_engine(url, pool_pre_ping=True, future=True))


def create_warehouse(url: str, schema: str, access: Access | None = None) -> list[str]:
    """Create what is missing; return the columns added to existing tables (`table.column`).

    With `access` (make up, production), also the two audiences' roles, the BI schema's views and the
    grants, in the same transaction (berlin_rentals/warehouse/access.py)."""
    if access is not None and access.schema != schema:
        raise ValueError(f"access is for schema {access.schema!r}, not {schema!r}")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
            metadata = warehouse_metadata(schema)
            metadata.create_all(conn, checkfirst=True)
            added = add_missing_columns(conn, metadata)
            if conn.dialect.name != "redshift":
                for stmt in statements(INDEXES, schema):
                    conn.execute(stmt)
            if access is not None:
                create_access(conn, access)
            return added
    finally:
        engine.dispose()


def add_missing_columns(conn: sa.Connection, metadata: sa.MetaData) -> list[str]:
    """Additive schema evolution: a nullable column the model gained is added to a table made before it.

    Only nullable columns are ever added, so rows loaded earlier stay valid (NULL: not known then).
    Anything else (a type change, a dropped column) is a migration for a person, not for `make up`.
    """
    inspector = sa.inspect(conn)
    added = []
    for table in metadata.sorted_tables:
        existing = {column["name"] for column in inspector.get_columns(table.name, schema=table.schema)}
        for column in table.columns:
            if column.name in existing:
                continue
            if not column.nullable:
                raise RuntimeError(f"{table.fullname} lacks the NOT NULL column {column.name}: migrate it by hand")
            column_type = column.type.compile(dialect=conn.dialect)
            # Identifiers come from the model, never from input; ALTER takes no bind parameters.
            conn.exec_driver_sql(f"ALTER TABLE {table.fullname} ADD COLUMN {column.name} {column_type}")
            added.append(f"{table.name}.{column.name}")
    return added


def ddl_statements(dialect: str, schema: str = "berlin_rentals") -> list[str]:
    if dialect == "redshift":
        import sqlalchemy_redshift.dialect as redshift

        target = redshift.RedshiftDialect_psycopg2()
    else:
        from sqlalchemy.dialects import postgresql

        target = postgresql.dialect()
    tables = [str(CreateTable(t).compile(dialect=target)).strip() for t in warehouse_metadata(schema).sorted_tables]
    indexes = [] if dialect == "redshift" else [str(stmt).strip() for stmt in statements(INDEXES, schema)]
    return tables + indexes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--print", dest="dialect", choices=["postgresql", "redshift"], required=True)
    parser.add_argument("--schema", default="berlin_rentals")
    args = parser.parse_args()
    print(";\n\n".join(ddl_statements(args.dialect, args.schema)) + ";")


if __name__ == "__main__":
    main()
