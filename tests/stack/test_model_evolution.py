"""A warehouse made before the model of issue #13 gains its new tables and columns additively, and a forced
reload of a file loaded before fills them in the rows that file loaded: on the real local PostgreSQL.

The "old" warehouse is the current one with the new tables and columns dropped after a load: rows loaded
with what the old model held, as an existing warehouse has them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa

from berlin_rentals.model import DIM_ADDRESS, FACT_FLATS
from berlin_rentals.warehouse.ddl import create_warehouse, make_engine
from tests.helpers import query, scalar
from tests.stack.test_exactly_once import RECORDS, load

# The fact columns the model gained (after quality_flags, the last one it had) and dim_address's district.
NEW_FACT_COLUMNS = [c.name for c in FACT_FLATS[[c.name for c in FACT_FLATS].index("quality_flags") + 1 :]]
UPLOADED = datetime(2019, 1, 13, 15, 1, tzinfo=UTC)
KEY = "raw/immobilienscout24_berlin_20190113_15.zip"


def make_it_old(settings) -> None:
    schema = settings.warehouse_schema
    engine = make_engine(settings.warehouse_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {schema}.dim_agent, {schema}.dim_district"))
        conn.execute(sa.text(f"ALTER TABLE {schema}.dim_address DROP COLUMN district_id"))
        for column in NEW_FACT_COLUMNS:
            conn.execute(sa.text(f"ALTER TABLE {schema}.fact_flats DROP COLUMN {column}"))
    engine.dispose()


def test_an_old_warehouse_gains_the_new_model_and_a_forced_reload_fills_its_rows(settings):
    assert NEW_FACT_COLUMNS[0] == "agent_id" and DIM_ADDRESS[-1].name == "district_id"
    first, _ = load(settings, KEY, RECORDS, uploaded=UPLOADED)
    assert first.status == "loaded" and first.fact_inserted == 11
    make_it_old(settings)

    added = create_warehouse(settings.warehouse_url, settings.warehouse_schema)
    assert set(added) == {f"fact_flats.{c}" for c in NEW_FACT_COLUMNS} | {"dim_address.district_id"}
    assert create_warehouse(settings.warehouse_url, settings.warehouse_schema) == []  # idempotent
    # the rows loaded before: the new columns are there, and empty (not known then)
    assert (
        scalar(settings, "SELECT COUNT(*) FROM {schema}.fact_flats WHERE agent_id IS NULL AND latitude IS NULL") == 11
    )
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.dim_address WHERE district_id IS NOT NULL") == 0
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.dim_agent") == 0

    again, _ = load(settings, KEY, RECORDS, uploaded=UPLOADED)
    assert again.status == "skipped"  # loaded per the ledger: only a forced reload touches the file's rows
    forced, _ = load(settings, KEY, RECORDS, uploaded=UPLOADED, force=True, run="forced")
    # the same versions of the same listings from the same key: equally new, so they replace their rows
    assert (forced.status, forced.fact_inserted, forced.fact_updated, forced.fact_stale) == ("loaded", 0, 11, 0)

    flat = query(
        settings,
        "SELECT latitude, longitude, has_pictures, number_of_parking_spaces, created_at, listing_type"
        " FROM {schema}.fact_flats WHERE listing_id = 37221479",
    )[0]
    assert tuple(flat) == (
        Decimal("52.4252554"),
        Decimal("13.3718754"),
        False,
        4,
        datetime(2018, 12, 21, 19, 35, 12, tzinfo=UTC),
        "expose:ApartmentRent",
    )
    rows = query(
        settings,
        "SELECT f.listing_id, g.email, d.district, c.city FROM {schema}.fact_flats AS f"
        " JOIN {schema}.dim_agent AS g ON g.agent_id = f.agent_id AND g.agency_id = f.agency_id"
        " JOIN {schema}.dim_address AS a ON a.address_id = f.address_id"
        " JOIN {schema}.dim_district AS d ON d.district_id = a.district_id AND d.city_id = a.city_id"
        " JOIN {schema}.dim_city AS c ON c.city_id = d.city_id",
    )
    source = {int(r["data"]["id"]): r["data"] for r in RECORDS}
    assert {r.listing_id: (r.email, r.district) for r in rows} == {
        i: (d["contactDetails_email"], d["realEstate_address_geoHierarchy_quarter_name"]) for i, d in source.items()
    }
    assert {r.city for r in rows} == {"Berlin"}
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.dim_agent") == 10


def test_the_loads_lookups_by_source_key_are_indexed_on_an_old_warehouse_too(settings):
    """A load finds its keys' facts, snapshots and rejects by source_key; without an index each of those
    read the whole table once a load, so every load got slower as the warehouse grew. A warehouse made
    before the indexes gets them from create_warehouse (make up, provisioning) like a new one."""
    schema = settings.warehouse_schema
    tables = ("fact_flats", "flat_snapshots", "rejected_records")

    def indexed() -> set[str]:
        rows = query(
            settings,
            "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = :schema AND tablename = ANY(:tables)",
            schema=schema,
            tables=list(tables),
        )
        # an index whose first column is source_key serves a lookup by it
        return {r.tablename for r in rows if "(source_key" in r.indexdef}

    create_warehouse(settings.warehouse_url, schema)
    assert indexed() == set(tables)
    engine = make_engine(settings.warehouse_url)
    with engine.begin() as conn:
        for table in tables:
            conn.execute(sa.text(f"DROP INDEX {schema}.{table}_source_key"))
    engine.dispose()
    assert indexed() == set()  # as a warehouse made before them
    create_warehouse(settings.warehouse_url, schema)
    assert indexed() == set(tables)
