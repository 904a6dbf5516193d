"""Read the SQL files under sql/ and bind the schema name (an identifier the code validated)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


@lru_cache(maxsize=None)
def _read(relative: str) -> str:
    return (SQL_DIR / relative).read_text()


def statements(relative: str, schema: str) -> list[sa.TextClause]:
    """The statements of one file, in order. Values are always bind parameters (`:name`), never text."""
    body = _read(relative).replace("{schema}", schema)
    lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
    parts = "\n".join(lines).split(";")
    return [sa.text(part.strip()) for part in parts if part.strip()]


def statement(relative: str, schema: str) -> sa.TextClause:
    (only,) = statements(relative, schema)
    return only
