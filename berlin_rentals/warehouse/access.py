"""The two audiences of the warehouse and what each may read (issue #13).

- The DWH role reads the warehouse schema as it is, raw contacts included (and the BI views).
- The BI role reads only the views of the BI schema, where a contact person is a pseudonym the
  pipeline computed (berlin_rentals.masking, keyed with a salt the database never holds); it is
  refused the warehouse schema.

`create_access` runs inside create_warehouse's transaction, so every `make up` (or create_warehouse
in production) creates what is missing and grants again: a table the model gained is covered, and a
view dropped and created again gets its grants back before anyone can see it without them.
The views are plain views on PostgreSQL (they run with their owner's rights) and late-binding ones on
Redshift (WITH NO SCHEMA BINDING: checked against the owner's rights when queried, so BI needs no
USAGE on the warehouse schema, and a table the load evolves never has a view depending on it).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from berlin_rentals.config import Settings
from berlin_rentals.warehouse.sql import statement, statements

# All are dropped before any is created, and none reads another: a view's columns can change freely.
VIEWS = (
    "access/create_view_flats.sql",
    "access/create_view_flat_rent_history.sql",
    "access/create_view_districts.sql",
    "access/create_view_market_listings.sql",
)
# Appended to each CREATE VIEW on Redshift (see the module's docstring).
_REDSHIFT_LATE_BINDING = " WITH NO SCHEMA BINDING"


@dataclass(frozen=True)
class Access:
    schema: str
    bi_schema: str
    dwh_role: str
    bi_role: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        return cls(
            settings.warehouse_schema,
            settings.warehouse_bi_schema,
            settings.warehouse_dwh_role,
            settings.warehouse_bi_role,
        )

    @property
    def identifiers(self) -> dict[str, str]:
        return {"bi_schema": self.bi_schema, "dwh_role": self.dwh_role, "bi_role": self.bi_role}


def _ensure_role(conn: sa.Connection, engine: str, schema: str, role: str) -> bool:
    """Create the role unless it exists (neither engine has CREATE ROLE IF NOT EXISTS); True if created."""
    if conn.execute(statement(f"{engine}/select_role.sql", schema), {"role": role}).first() is not None:
        return False
    conn.execute(statement(f"{engine}/create_role.sql", schema, role=role))
    return True


def view_statements(engine: str, access: Access) -> list[sa.TextClause]:
    """DROP and CREATE of every BI view, as the engine runs them."""
    drops = statements("access/drop_bi_views.sql", access.schema, bi_schema=access.bi_schema)
    creates = [statement(path, access.schema, bi_schema=access.bi_schema) for path in VIEWS]
    if engine == "redshift":
        creates = [sa.text(create.text.rstrip() + _REDSHIFT_LATE_BINDING) for create in creates]
    return [*drops, *creates]


def create_access(conn: sa.Connection, access: Access) -> list[str]:
    """Roles (when missing), the BI schema and its views, and both roles' grants; the roles created."""
    engine = conn.dialect.name if conn.dialect.name == "redshift" else "postgresql"
    created = [role for role in (access.dwh_role, access.bi_role) if _ensure_role(conn, engine, access.schema, role)]
    for stmt in statements("access/create_bi_schema.sql", access.schema, bi_schema=access.bi_schema):
        conn.execute(stmt)
    for stmt in view_statements(engine, access):
        conn.execute(stmt)
    for grants in ("grant_dwh_read.sql", "grant_bi_read.sql"):
        for stmt in statements(f"{engine}/{grants}", access.schema, **access.identifiers):
            conn.execute(stmt)
    return created
