"""The two audiences for real, on the local PostgreSQL: logged in as the BI role (WAREHOUSE_BI_URL)
and as the DWH role (WAREHOUSE_DWH_URL) that `make up` (here the test stack) created with passwords.

One schema and its BI schema for the module, loaded once through the ingest flow: the real sample and
two hand-made listings whose company is a private landlord's name and a registered sole trader."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
import sqlalchemy as sa

from berlin_rentals.config import Settings
from berlin_rentals.masking import Masker
from berlin_rentals.s3 import s3_client
from berlin_rentals.synthetic import batch_name, read_sample_records, with_listing_id, zip_records
from berlin_rentals.warehouse.access import Access
from berlin_rentals.warehouse.ddl import create_warehouse, make_engine
from devstack.demo import print_bi_rows
from flows.ingest import ingest_file
from tests.helpers import upload
from tests.unit.test_bi_views import FLATS

PRIVATE_NAME, SOLE_TRADER = 900000001, 900000002


def _hand_made() -> list[dict]:
    """Two listings of agencies of their own: a company field holding a person's name, and an e.K."""
    sample = read_sample_records()[0]
    made = []
    for listing, company, first, last, email, phone in (
        (PRIVATE_NAME, "Greta Sommer", "Greta", "Sommer", "greta.sommer@example.org", "030 5550101"),
        (SOLE_TRADER, "Hausverwaltung Brandt e.K.", "Otto", "Brandt", "o.brandt@example.org", "030 5550202"),
    ):
        record = with_listing_id(sample, listing)
        record["data"] |= {
            "companyWideCustomerId": f"001.{listing}",
            "contactDetails_company": company,
            "contactDetails_firstname": first,
            "contactDetails_lastname": last,
            "contactDetails_email": email,
            "contactDetails_phoneNumber": phone,
        }
        made.append(record)
    return made


@pytest.fixture(scope="module")
def audiences(stack_env, sample_zip):
    """(settings, access, BI engine, DWH engine) over a module schema loaded with 13 listings."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WAREHOUSE_SCHEMA", schema)
        patch.setenv("WAREHOUSE_BI_SCHEMA", f"{schema}_bi")
        settings = Settings.from_env()
        access = Access.from_settings(settings)
        assert create_warehouse(settings.warehouse_url, schema, access) == []
        s3 = s3_client(settings)
        hour = datetime(2019, 1, 13, 16, tzinfo=UTC)
        for name, body in (
            (sample_zip.name, sample_zip.read_bytes()),
            (batch_name(hour) + ".zip", zip_records(batch_name(hour) + ".json", _hand_made())),
        ):
            key, etag = upload(s3, settings, name, body, folder=schema)
            state = ingest_file(settings.raw_bucket, key, etag, False, return_state=True)
            assert state.is_completed(), state.result(raise_on_failure=False)
        bi, dwh = sa.create_engine(settings.warehouse_bi_url), sa.create_engine(os.environ["WAREHOUSE_DWH_URL"])
        try:
            yield settings, access, bi, dwh
        finally:
            bi.dispose()
            dwh.dispose()
            owner = make_engine(settings.warehouse_url)
            with owner.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA {access.bi_schema} CASCADE"))
                conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
            owner.dispose()


def rows(engine: sa.Engine, sql: str) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).all()


def raw_contacts(audiences) -> dict[int, sa.Row]:
    """Each listing's agent as the DWH role reads it: the raw values."""
    settings, access, _, dwh = audiences
    found = rows(
        dwh,
        f"""SELECT f.listing_id, g.firstname, g.lastname, g.email, g.phone_number, g.cell_phone_number,
                   g.agent_name_pseudonym, g.email_pseudonym, g.phone_pseudonym
            FROM {access.schema}.fact_flats f JOIN {access.schema}.dim_agent g ON g.agent_id = f.agent_id""",
    )
    return {row.listing_id: row for row in found}


def test_the_bi_role_reads_flats_with_pseudonyms_and_no_raw_contact_value(audiences):
    settings, access, bi, _ = audiences
    with bi.connect() as conn:
        result = conn.execute(sa.text(f"SELECT * FROM {access.bi_schema}.flats"))
        assert list(result.keys()) == FLATS
        flats = {row.listing_id: row for row in result}
    raw = raw_contacts(audiences)
    assert len(flats) == 13 and flats.keys() == raw.keys()
    mask = Masker(settings.mask_salt.encode(), settings.mask_salt_id).mask
    emails = {r.email for r in raw.values() if r.email}
    phones = {p for r in raw.values() for p in (r.phone_number, r.cell_phone_number) if p}
    full_names = {f"{r.firstname} {r.lastname}" for r in raw.values() if r.firstname and r.lastname}
    parts = {p for r in raw.values() for p in (r.firstname, r.lastname) if p}
    assert len(emails) >= 10 and phones and len(full_names) >= 6  # something to leak, so the test can fail
    for listing, row in flats.items():
        agent = raw[listing]
        # The keyed HMAC of this listing's own agent: the same person is the same pseudonym, nothing more.
        assert row.agent_email == mask(agent.email) and row.agent_email.startswith("h:")
        name = " ".join(p for p in (agent.firstname, agent.lastname) if p)
        assert row.agent_name == mask(name) == agent.agent_name_pseudonym
        assert row.agent_phone == agent.phone_pseudonym
        assert (row.agent_phone is None) == (agent.phone_number is None and agent.cell_phone_number is None)
        cells = {column: str(value) for column, value in row._mapping.items() if value is not None}
        for column, text in cells.items():
            assert not [value for value in emails | phones | full_names if value in text], (listing, column)
            if column.startswith("agent_"):
                assert not [part for part in parts if part in text], (listing, column)


def test_the_bi_role_is_refused_the_warehouse_schema(audiences):
    settings, access, _, _ = audiences
    bi = sa.make_url(settings.warehouse_bi_url)
    with psycopg.connect(
        host=bi.host, port=bi.port, user=bi.username, password=bi.password, dbname=bi.database
    ) as conn:
        for table in ("fact_flats", "dim_agent", "dim_agency", "rejected_records", "load_ledger"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                conn.execute(f"SELECT 1 FROM {access.schema}.{table} LIMIT 1")
            assert refused.value.sqlstate == "42501" and "permission denied for schema" in str(refused.value)
            conn.rollback()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host=bi.host, port=bi.port, user=bi.username, password="not-it", dbname=bi.database)


def test_the_dwh_role_reads_the_raw_contact_of_every_listing_and_cannot_write(audiences):
    settings, access, _, dwh = audiences
    raw = raw_contacts(audiences)
    source = {int(r["data"]["id"]): r["data"] for r in [*read_sample_records(), *_hand_made()]}
    assert raw.keys() == source.keys()
    for listing, record in source.items():
        assert raw[listing].email == record["contactDetails_email"]
        assert raw[listing].lastname == record.get("contactDetails_lastname")
        assert raw[listing].firstname == record.get("contactDetails_firstname")
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied for table fact_flats"):
        with dwh.begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {access.schema}.fact_flats"))


def test_agency_name_is_a_registered_firms_name_and_never_a_private_persons(audiences):
    _, access, bi, dwh = audiences
    shown = {
        r.listing_id: r.agency_name for r in rows(bi, f"SELECT listing_id, agency_name FROM {access.bi_schema}.flats")
    }
    company = {
        r.listing_id: r.company
        for r in rows(
            dwh,
            f"SELECT f.listing_id, a.company FROM {access.schema}.fact_flats f "
            f"JOIN {access.schema}.dim_agency a ON a.agency_id = f.agency_id",
        )
    }
    assert shown[PRIVATE_NAME] is None and company[PRIVATE_NAME] == "Greta Sommer"
    assert shown[SOLE_TRADER] == "Hausverwaltung Brandt e.K."
    assert shown[56906504] == company[56906504] == "Adler Greta Immobilien GmbH"
    # The sample's private listings have no company at all; every GmbH reaches BI as it is.
    assert sum(value is None for value in company.values()) == 5
    assert {k: v for k, v in shown.items() if k != PRIVATE_NAME} == {
        k: v for k, v in company.items() if k != PRIVATE_NAME
    }


def test_the_other_bi_views_answer_as_the_bi_role(audiences):
    _, access, bi, dwh = audiences
    history = rows(bi, f"SELECT * FROM {access.bi_schema}.flat_rent_history WHERE listing_id = 56906504")
    assert len(history) == 1 and history[0].base_rent_per_sqm == round(
        history[0].base_rent / history[0].living_space, 2
    )
    districts = rows(bi, f"SELECT * FROM {access.bi_schema}.districts")
    assert sum(d.listings for d in districts) == 13
    mitte = [d for d in districts if d.district == "Mitte (Mitte)"]
    assert mitte and mitte[0].city == "Berlin"
    market = {r.listing_id: r for r in rows(bi, f"SELECT * FROM {access.bi_schema}.market_listings")}
    years = {
        r.listing_id: r.construction_year
        for r in rows(dwh, f"SELECT listing_id, construction_year FROM {access.schema}.fact_flats")
    }
    assert {k: r.construction_year for k, r in market.items()} == years and any(years.values())


def test_create_warehouse_again_is_idempotent_takes_back_hand_grants_and_covers_new_tables(audiences):
    settings, access, bi, dwh = audiences
    before = rows(bi, f"SELECT * FROM {access.bi_schema}.flats ORDER BY listing_id")
    owner = make_engine(settings.warehouse_url)
    try:
        with owner.begin() as conn:
            # someone widened BI's access by hand, and a table arrived later (as a new version's would)
            conn.execute(sa.text(f"GRANT USAGE ON SCHEMA {access.schema} TO {access.bi_role}"))
            conn.execute(sa.text(f"GRANT SELECT ON {access.schema}.dim_agent TO {access.bi_role}"))
            conn.execute(sa.text(f"CREATE TABLE {access.schema}.added_later (x integer)"))
        # default privileges: the DWH role reads the new table before any rerun
        assert rows(dwh, f"SELECT count(*) FROM {access.schema}.added_later")[0][0] == 0
        agents = rows(dwh, f"SELECT count(*) FROM {access.schema}.dim_agent")[0][0]
        assert rows(bi, f"SELECT count(*) FROM {access.schema}.dim_agent")[0][0] == agents > 0  # the hand grant works
        assert create_warehouse(settings.warehouse_url, access.schema, access) == []
        assert create_warehouse(settings.warehouse_url, access.schema, access) == []
        with owner.connect() as conn:
            roles = conn.execute(
                sa.text("SELECT count(*) FROM pg_roles WHERE rolname IN (:a, :b)"),
                {"a": access.dwh_role, "b": access.bi_role},
            ).scalar_one()
    finally:
        owner.dispose()
    assert roles == 2
    assert rows(bi, f"SELECT * FROM {access.bi_schema}.flats ORDER BY listing_id") == before
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied for schema"):
        rows(bi, f"SELECT count(*) FROM {access.schema}.dim_agent")


def test_the_demo_prints_flats_as_the_bi_role_sees_them(audiences, capsys):
    settings, access, _, _ = audiences
    print_bi_rows(settings)
    out = capsys.readouterr().out
    assert f"BI view {access.bi_schema}.flats as {access.bi_role} (5 of 13 listings" in out
    lines = out.splitlines()[3:]  # a blank line, the title, the header
    assert len(lines) == 5 and all(" h:" in line for line in lines)
    assert not [email for email in (r.email for r in raw_contacts(audiences).values()) if email in out]
