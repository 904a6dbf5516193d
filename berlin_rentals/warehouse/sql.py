"""Read the SQL files under sql/ and bind the schema name and other identifiers the code validated."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import sqlalchemy as sa

from berlin_rentals.config import PLAIN_IDENTIFIER

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


@cache
def _read(relative: str) -> str:
    return (SQL_DIR / relative).read_text()


def statements(relative: str, schema: str, **identifiers: str) -> list[sa.TextClause]:
    """The statements of one file, in order. Values are always bind parameters (`:name`), never text.

    `{schema}` and each `{name}` of `identifiers` (the BI schema, a role) are pasted in: DDL and GRANT
    take no bind parameters for names.
    """
    names = {"schema": schema, **identifiers}
    body = _read(relative)
    for name, value in names.items():
        # The only text pasted into SQL: checked here too, whatever the caller validated.
        if not PLAIN_IDENTIFIER.fullmatch(value):
            raise ValueError(f"{name} {value!r} is not a plain lower-case SQL identifier")
        body = body.replace("{" + name + "}", value)
    lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
    parts = "\n".join(lines).split(";")
    return [sa.text(part.strip()) for part in parts if part.strip()]


def statement(relative: str, schema: str, **identifiers: str) -> sa.TextClause:
    (only,) = statements(relative, schema, **identifiers)
    return only
