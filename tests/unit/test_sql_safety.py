"""SQL is parameterised: values are bind parameters, and the only text pasted in is checked."""

from __future__ import annotations

import re

import pytest

from berlin_rentals.warehouse.sql import SQL_DIR, statements

# COPY takes no bind parameters: its three pieces are validated by RedshiftTarget.copy_sql (tested
# in test_redshift_target.py) before they are pasted in.
PASTED = {
    "redshift/copy_stage_from_parquet.sql": {"{table}", "{s3_uri}", "{iam_role}", "{schema}"},
    # likewise, validated by RedshiftTarget.batch_copy_sql (test_redshift_batch_statements.py)
    "redshift/copy_stage_from_parquet_manifest.sql": {"{table}", "{manifest_uri}", "{iam_role}", "{schema}"},
    # the column list of the model (berlin_rentals/model.py), identifiers from code, never from input
    "replay/insert_replayed_flat_snapshots.sql": {"{schema}", "{snapshot_columns}"},
    # names from Settings (plain identifiers, checked again by warehouse/sql.py): GRANT and DDL bind none
    **{
        f"{engine}/{name}.sql": {"{schema}", "{bi_schema}", "{dwh_role}", "{bi_role}"}
        for engine in ("postgresql", "redshift")
        for name in ("grant_dwh_read", "grant_bi_read")
    },
    **{f"{engine}/create_role.sql": {"{schema}", "{role}"} for engine in ("postgresql", "redshift")},
    **{f"access/{path.name}": {"{schema}", "{bi_schema}"} for path in (SQL_DIR / "access").glob("*.sql")},
}


def test_every_sql_file_pastes_in_nothing_but_the_schema():
    files = sorted(SQL_DIR.rglob("*.sql"))
    assert len(files) >= 20
    for path in files:
        relative = path.relative_to(SQL_DIR).as_posix()
        placeholders = set(re.findall(r"\{[^}]*\}", path.read_text()))
        assert placeholders <= PASTED.get(relative, {"{schema}"}), (relative, placeholders)


def test_values_are_bound_never_quoted_into_the_text():
    for path in sorted(SQL_DIR.rglob("*.sql")):
        body = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
        # a bind parameter inside quotes would be a literal, not a parameter
        literals = re.findall(r"'[^']*'", body)
        assert not [text for text in literals if re.search(r":[a-z_]", text)], path


@pytest.mark.parametrize("schema", ["public; drop table x", "Rentals", "a-b", "", "x" * 64])
def test_a_schema_that_is_not_a_plain_identifier_never_reaches_sql(schema):
    with pytest.raises(ValueError, match="identifier"):
        statements("ledger/select_file_status.sql", schema)


@pytest.mark.parametrize("name", ["bi_schema", "bi_role"])
@pytest.mark.parametrize("value", ["x; grant all on schema berlin_rentals to public", "BI", "a b", ""])
def test_any_other_pasted_name_is_held_to_the_same_rule(name, value):
    identifiers = {"bi_schema": "berlin_rentals_bi", "dwh_role": "dwh", "bi_role": "bi"} | {name: value}
    with pytest.raises(ValueError, match=f"{name} .* identifier"):
        statements("postgresql/grant_bi_read.sql", "berlin_rentals", **identifiers)


def test_comments_sit_on_lines_of_their_own():
    """statements() drops comment lines; a comment after SQL on its line would be sent, and a client or
    log that folds the statement onto one line would comment out the rest of it."""
    for path in sorted(SQL_DIR.rglob("*.sql")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = re.sub(r"'[^']*'", "''", line)
            assert line.lstrip().startswith("--") or "--" not in code, f"{path.name}:{number}: {line}"


# `$` also matches before a final newline, so a pattern checked with re.match let "berlin_rentals\n"
# through: every name pasted into SQL is held to a full match.
@pytest.mark.parametrize("field", ["warehouse_schema", "warehouse_bi_schema", "warehouse_dwh_role", "raw_bucket"])
def test_a_setting_with_a_trailing_newline_is_refused(field):
    from berlin_rentals.config import ConfigError, Settings

    value = getattr(Settings, field) + "\n"
    with pytest.raises(ConfigError, match=re.escape(repr(value))):
        Settings(warehouse_url="postgresql://unused", **{field: value})


def test_a_schema_with_a_trailing_newline_never_reaches_sql():
    with pytest.raises(ValueError, match="identifier"):
        statements("ledger/select_file_status.sql", "berlin_rentals\n")
