"""Read the SQL files under sql/ and bind the schema name (an identifier the code validated)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import sqlalchemy as sa

from berlin_rentals.config import PLAIN_IDENTIFIER

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


@cache
def _read(relative: str) -> str:
    return (SQL_DIR / relative).read_text()


def statements(relative: str, schema: str) -> list[sa.TextClause]:
    """The statements of one file, in order. Values are always bind parameters (`:name`), never text."""
    # The one piece of text pasted into SQL: checked here too, whatever the caller validated.
    if not PLAIN_IDENTIFIER.match(schema):
        raise ValueError(f"schema {schema!r} is not a plain lower-case SQL identifier")
    body = _read(relative).replace("{schema}", schema)
    lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
    parts = "\n".join(lines).split(";")
    return [sa.text(part.strip()) for part in parts if part.strip()]


def statement(relative: str, schema: str) -> sa.TextClause:
    (only,) = statements(relative, schema)
    return only
