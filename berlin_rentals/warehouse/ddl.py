"""Create the warehouse schema and tables (idempotent). `python -m berlin_rentals.warehouse.ddl --print redshift` shows the DDL."""

from __future__ import annotations

import argparse

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from berlin_rentals.warehouse.tables import warehouse_metadata


def make_engine(url: str) -> sa.Engine:
    # pool_pre_ping: a worker that idled through a database restart gets a fresh connection.
    return sa.create_engine(url, pool_pre_ping=True, future=True)


def create_warehouse(url: str, schema: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
            warehouse_metadata(schema).create_all(conn, checkfirst=True)
    finally:
        engine.dispose()


def ddl_statements(dialect: str, schema: str = "berlin_rentals") -> list[str]:
    if dialect == "redshift":
        import sqlalchemy_redshift.dialect as redshift

        target = redshift.RedshiftDialect_psycopg2()
    else:
        from sqlalchemy.dialects import postgresql

        target = postgresql.dialect()
    return [str(CreateTable(t).compile(dialect=target)).strip() for t in warehouse_metadata(schema).sorted_tables]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--print", dest="dialect", choices=["postgresql", "redshift"], required=True)
    parser.add_argument("--schema", default="berlin_rentals")
    args = parser.parse_args()
    print(";\n\n".join(ddl_statements(args.dialect, args.schema)) + ";")


if __name__ == "__main__":
    main()
