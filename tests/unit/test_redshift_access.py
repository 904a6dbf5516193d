"""What create_access sends to Redshift, captured by the recording driver (as the load's statements are
in test_redshift_statements.py): parsed as Redshift SQL, roles and grants of role-based access control,
late-binding views in the BI schema, the BI role kept off the warehouse schema, one transaction."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
import sqlglot
from sqlglot import exp

import tests.recording_dbapi as driver
from berlin_rentals.warehouse.access import Access, create_access

ACCESS = Access("berlin_rentals", "berlin_rentals_bi", "berlin_rentals_dwh", "berlin_rentals_bi")
# Redshift's grammar for what sqlglot keeps as a raw command (it parses CREATE VIEW, GRANT ON SCHEMA, REVOKE).
COMMANDS = [
    re.compile(r"^CREATE ROLE [a-z_][a-z0-9_]*$"),
    re.compile(r"^GRANT SELECT ON ALL TABLES IN SCHEMA [a-z_][a-z0-9_]* TO ROLE [a-z_][a-z0-9_]*$"),
    re.compile(
        r"^ALTER DEFAULT PRIVILEGES IN SCHEMA [a-z_][a-z0-9_]* GRANT SELECT ON TABLES TO ROLE [a-z_][a-z0-9_]*$"
    ),
    re.compile(r"^REVOKE ALL ON ALL TABLES IN SCHEMA [a-z_][a-z0-9_]* FROM (PUBLIC|ROLE [a-z_][a-z0-9_]*)$"),
]


def recorded(existing_roles: list[str]) -> list[str]:
    engine = sa.create_engine("redshift+redshift_connector://admin@cluster:5439/rentals", module=driver)
    with engine.connect():
        pass
    driver.STATEMENTS.clear()
    answers = [(re.compile(r"FROM svv_roles", re.I), [(role,) for role in existing_roles], ["role_name"])]
    driver._ANSWERS[:0] = answers
    try:
        with engine.begin() as conn:
            create_access(conn, ACCESS)
    finally:
        del driver._ANSWERS[: len(answers)]
    return [" ".join(driver.rendered(sql, params).split()) for sql, params in driver.STATEMENTS]


@pytest.fixture(scope="module")
def sent() -> list[str]:
    return recorded([])


def test_every_statement_parses_as_redshift_sql_and_raw_commands_follow_its_grammar(sent):
    body = [sql for sql in sent if sql not in ("COMMIT", "ROLLBACK")]
    assert len(body) > 20
    for sql in body:
        tree = sqlglot.parse_one(sql, read="redshift", error_level=sqlglot.ErrorLevel.RAISE)
        if isinstance(tree, exp.Command):
            assert any(pattern.match(sql) for pattern in COMMANDS), sql


def test_missing_roles_are_created_as_rbac_roles_and_existing_ones_left_alone(sent):
    assert [sql for sql in sent if sql.startswith("CREATE ROLE")] == [
        "CREATE ROLE berlin_rentals_dwh",
        "CREATE ROLE berlin_rentals_bi",
    ]
    assert sum("FROM svv_roles WHERE role_name = 'berlin_rentals_bi'" in sql for sql in sent) == 1
    again = recorded(["a role of that name"])  # svv_roles answers: it exists
    assert not [sql for sql in again if sql.startswith("CREATE ROLE")]
    assert len(again) == len(sent) - 2


def test_views_are_late_binding_in_the_bi_schema_over_the_warehouse_tables(sent):
    views = [sqlglot.parse_one(sql, read="redshift") for sql in sent if sql.startswith("CREATE VIEW")]
    assert {view.this.name for view in views} == {"flats", "flat_rent_history", "districts", "market_listings"}
    for view, sql in zip(views, [s for s in sent if s.startswith("CREATE VIEW")], strict=True):
        assert sql.endswith("WITH NO SCHEMA BINDING"), sql[:80]
        assert view.this.db == "berlin_rentals_bi"
        # A late-binding view must qualify every table with its schema.
        assert {table.db for table in view.expression.find_all(exp.Table)} == {"berlin_rentals"}
    dropped = [sql for sql in sent if sql.startswith("DROP VIEW IF EXISTS berlin_rentals_bi.")]
    assert len(dropped) == 4 and max(map(sent.index, dropped)) < min(sent.index(s) for s in sent if "CREATE VIEW" in s)


def grants_to(sent: list[str], role: str) -> list[str]:
    return [sql for sql in sent if sql.startswith("GRANT") and sql.endswith(f"TO ROLE {role}")]


def test_the_dwh_role_reads_the_warehouse_schema_and_the_bi_role_only_its_own(sent):
    assert grants_to(sent, "berlin_rentals_dwh") == [
        "GRANT USAGE ON SCHEMA berlin_rentals TO ROLE berlin_rentals_dwh",
        "GRANT SELECT ON ALL TABLES IN SCHEMA berlin_rentals TO ROLE berlin_rentals_dwh",
        "GRANT USAGE ON SCHEMA berlin_rentals_bi TO ROLE berlin_rentals_dwh",
        "GRANT SELECT ON ALL TABLES IN SCHEMA berlin_rentals_bi TO ROLE berlin_rentals_dwh",
    ]
    assert grants_to(sent, "berlin_rentals_bi") == [
        "GRANT USAGE ON SCHEMA berlin_rentals_bi TO ROLE berlin_rentals_bi",
        "GRANT SELECT ON ALL TABLES IN SCHEMA berlin_rentals_bi TO ROLE berlin_rentals_bi",
    ]
    revoked = [sql for sql in sent if sql.startswith("REVOKE")]
    assert "REVOKE ALL ON SCHEMA berlin_rentals FROM ROLE berlin_rentals_bi" in revoked
    assert "REVOKE ALL ON SCHEMA berlin_rentals FROM PUBLIC" in revoked
    assert all(" berlin_rentals_bi " not in sql for sql in revoked)  # nothing taken from the BI schema
    defaults = [sql for sql in sent if sql.startswith("ALTER DEFAULT PRIVILEGES")]
    assert defaults == [
        "ALTER DEFAULT PRIVILEGES IN SCHEMA berlin_rentals GRANT SELECT ON TABLES TO ROLE berlin_rentals_dwh",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA berlin_rentals_bi GRANT SELECT ON TABLES TO ROLE berlin_rentals_bi",
    ]
    # Every grant and revoke names a role of RBAC (or PUBLIC), never a user or a group.
    for sql in sent:
        if sql.startswith(("GRANT", "REVOKE", "ALTER DEFAULT")):
            assert re.search(r" (TO|FROM) (ROLE [a-z_]+|PUBLIC)$", sql), sql
    assert not [sql for sql in sent if "MASKING POLICY" in sql.upper()]  # anonymised in the views instead


def test_everything_runs_in_one_transaction_committed_once_at_the_end(sent):
    assert sent.count("COMMIT") == 1
    assert set(sent[sent.index("COMMIT") + 1 :]) <= {"ROLLBACK"}
    assert "ROLLBACK" not in sent[: sent.index("COMMIT")]
