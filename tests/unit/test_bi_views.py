"""The BI schema's views as SQL text (no database): the contract's columns, and no raw contact in any view.

They run for real on PostgreSQL as the BI role in tests/stack/test_access_roles.py; Redshift's statements
are in tests/unit/test_redshift_access.py.
"""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from berlin_rentals.config import ConfigError, Settings
from berlin_rentals.masking import PERSONAL_COLUMNS
from berlin_rentals.warehouse.access import VIEWS, Access, view_statements

ACCESS = Access("berlin_rentals", "berlin_rentals_bi", "berlin_rentals_dwh", "berlin_rentals_bi")
# Issue #13's `flats`, in its order: exactly the required dimensions.
FLATS = [
    "listing_id", "living_space", "number_of_rooms", "bedrooms", "bathrooms", "guest_toilet", "base_rent",
    "total_rent", "service_charge", "heating_costs", "parking_space_price", "city", "district", "street",
    "house_number", "latitude", "longitude", "agency_name", "agent_name", "agent_email", "agent_phone",
    "is_active", "created_at", "updated_at", "has_pictures",
]  # fmt: skip
# Every column that holds a contact person's clear value, in dim_agency (its old contact) or dim_agent.
RAW_CONTACT = {*PERSONAL_COLUMNS, "salutation", "phone_area_code", "phone_country_code", "cell_phone_area_code"}
RAW_CONTACT |= {"cell_phone_country_code", "agent_name", "name"}


def parsed_views(dialect: str) -> dict[str, exp.Create]:
    views = {}
    for stmt in view_statements(dialect, ACCESS):
        tree = sqlglot.parse_one(stmt.text, read=dialect if dialect == "redshift" else "postgres")
        if isinstance(tree, exp.Create):
            views[tree.this.name] = tree
    return views


@pytest.mark.parametrize("dialect", ["postgresql", "redshift"])
def test_flats_has_exactly_the_contracts_columns_in_its_order(dialect):
    views = parsed_views(dialect)
    assert set(views) == {"flats", "flat_rent_history", "districts", "market_listings"} and len(VIEWS) == 4
    select = views["flats"].expression
    assert [projection.alias_or_name for projection in select.expressions] == FLATS


def test_the_agent_columns_are_dim_agents_pseudonyms_and_nothing_else():
    select = parsed_views("postgresql")["flats"].expression
    agent_alias = next(j.this.alias for j in select.args["joins"] if j.this.name == "dim_agent")
    sources = {p.alias_or_name: [(c.table, c.name) for c in p.find_all(exp.Column)] for p in select.expressions}
    assert sources["agent_name"] == [(agent_alias, "agent_name_pseudonym")]
    assert sources["agent_email"] == [(agent_alias, "email_pseudonym")]
    assert sources["agent_phone"] == [(agent_alias, "phone_pseudonym")]
    assert sources["updated_at"] == [("f", "last_modified_at")]


def test_no_view_reads_a_raw_contact_column_of_any_table():
    for name, view in parsed_views("postgresql").items():
        read = {column.name for column in view.expression.find_all(exp.Column)}
        assert not read & RAW_CONTACT, (name, read & RAW_CONTACT)


def test_the_market_view_carries_construction_year_and_flats_does_not():
    views = parsed_views("postgresql")
    assert "construction_year" in [p.alias_or_name for p in views["market_listings"].expression.expressions]
    assert "construction_year" not in {c.name for c in views["flats"].expression.find_all(exp.Column)}


def test_every_view_reads_the_warehouse_schema_and_is_created_in_the_bi_schema():
    for name, view in parsed_views("postgresql").items():
        assert view.this.db == "berlin_rentals_bi", name
        assert {table.db for table in view.expression.find_all(exp.Table)} == {"berlin_rentals"}, name


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"WAREHOUSE_BI_SCHEMA": "berlin_rentals"}, "WAREHOUSE_BI_SCHEMA must differ"),
        ({"WAREHOUSE_BI_ROLE": "berlin_rentals_dwh"}, "WAREHOUSE_BI_ROLE must differ"),
        ({"WAREHOUSE_BI_ROLE": "bi; drop role x"}, "WAREHOUSE_BI_ROLE must be a plain"),
        ({"WAREHOUSE_DWH_ROLE": "DWH"}, "WAREHOUSE_DWH_ROLE must be a plain"),
        ({"WAREHOUSE_BI_SCHEMA": "bi-views"}, "WAREHOUSE_BI_SCHEMA must be a plain"),
    ],
)
def test_the_audiences_settings_are_refused_unless_plain_and_distinct(env, error):
    with pytest.raises(ConfigError, match=error):
        Settings.from_env({"WAREHOUSE_URL": "postgresql://x", **env})


def test_each_warehouse_schema_has_its_own_bi_schema_unless_one_is_set():
    base = {"WAREHOUSE_URL": "postgresql://x", "WAREHOUSE_SCHEMA": "rentals_staging"}
    assert Settings.from_env(base).warehouse_bi_schema == "rentals_staging_bi"
    assert Settings.from_env(base | {"WAREHOUSE_BI_SCHEMA": "reports"}).warehouse_bi_schema == "reports"


def test_the_audiences_defaults_and_their_urls_come_from_the_environment():
    settings = Settings.from_env({"WAREHOUSE_URL": "postgresql://x", "WAREHOUSE_BI_URL": "postgresql://bi:pw@h/db"})
    assert Access.from_settings(settings) == ACCESS
    assert settings.warehouse_bi_url == "postgresql://bi:pw@h/db"
    assert "pw" not in repr(settings)
