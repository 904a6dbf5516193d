"""The warehouse model, defined once: each staged table's columns with their Arrow and SQL types.

The staged Parquet files, the temporary staging tables and the target tables are all built
from these lists. Column order matters: Redshift's COPY of Parquet maps columns by position.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import sqlalchemy as sa

# Redshift counts VARCHAR length in bytes; the transform caps long text at this many UTF-8 bytes
# so both engines hold exactly the same value.
MAX_TEXT_BYTES = 65535


@dataclass(frozen=True)
class Col:
    name: str
    arrow: pa.DataType
    sql: Callable[[], sa.types.TypeEngine]
    nullable: bool = True


def _money() -> sa.Numeric:
    return sa.Numeric(12, 2)


def _text(length: int) -> Callable[[], sa.String]:
    return lambda: sa.String(length)


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _area() -> sa.Numeric:
    return sa.Numeric(10, 2)


def _rooms() -> sa.Numeric:
    return sa.Numeric(6, 2)


def _degrees() -> sa.Numeric:
    return sa.Numeric(10, 7)


MONEY = pa.decimal128(12, 2)
AREA = pa.decimal128(10, 2)
ROOMS = pa.decimal128(6, 2)
# 1e-7 degrees is about 1 cm: every digit the source's coordinates carry that means anything
DEGREES = pa.decimal128(10, 7)
TS = pa.timestamp("us", tz="UTC")

DIM_CITY = [
    Col("city_id", pa.int64(), sa.BigInteger, nullable=False),
    Col("city", pa.string(), _text(256)),
    Col("country", pa.string(), _text(256)),
]

# The IS24 quarter (Berlin's Ortsteil, e.g. "Prenzlauer Berg") with its geo code: what a BI user groups
# rents by. Between address and city, so a district's listings are one join away and its name is spelt once.
DIM_DISTRICT = [
    Col("district_id", pa.int64(), sa.BigInteger, nullable=False),
    Col("city_id", pa.int64(), sa.BigInteger, nullable=False),
    Col("district", pa.string(), _text(256)),
    Col("geo_code", pa.string(), _text(64)),
    Col("region", pa.string(), _text(256)),
]

DIM_ADDRESS = [
    Col("address_id", pa.int64(), sa.BigInteger, nullable=False),
    Col("city_id", pa.int64(), sa.BigInteger, nullable=False),
    Col("postcode", pa.string(), _text(16)),
    Col("quarter", pa.string(), _text(256)),
    Col("region", pa.string(), _text(256)),
    Col("street", pa.string(), _text(256)),
    Col("house_number", pa.string(), _text(64)),
    Col("district_id", pa.int64(), sa.BigInteger),
]

# The contact columns dim_agency and dim_agent share: as the source has them (masked when
# ETL_MASK_PERSONAL_DATA is on).
_CONTACT = [
    Col("salutation", pa.string(), _text(32)),
    Col("firstname", pa.string(), _text(256)),
    Col("lastname", pa.string(), _text(256)),
    Col("email", pa.string(), _text(512)),
    Col("phone_number", pa.string(), _text(64)),
    Col("phone_area_code", pa.string(), _text(16)),
    Col("phone_country_code", pa.string(), _text(16)),
    Col("phone_subscriber", pa.string(), _text(64)),
    Col("cell_phone_number", pa.string(), _text(64)),
    Col("cell_phone_area_code", pa.string(), _text(16)),
    Col("cell_phone_country_code", pa.string(), _text(16)),
    Col("cell_phone_subscriber", pa.string(), _text(64)),
]

DIM_AGENCY = [
    Col("agency_id", pa.int64(), sa.BigInteger, nullable=False),
    Col("customer_id", pa.string(), _text(64)),
    Col("company", pa.string(), _text(512)),
    # the contact of the agency's newest listing, kept for compatibility: dim_agent has each listing's
    *_CONTACT,
    # the listing modification that supplied these attributes: a late batch never overwrites newer ones
    Col("source_modified_at", TS, _ts),
]

# The contact person of a listing, one row per person of an agency: an agency with several agents keeps
# each. The pseudonyms are a keyed HMAC of the raw value (ETL_MASK_SALT; NULL without a salt), for readers
# who must not see the person (the BI views).
DIM_AGENT = [
    Col("agent_id", pa.int64(), sa.BigInteger, nullable=False),
    Col("agency_id", pa.int64(), sa.BigInteger, nullable=False),
    *_CONTACT,
    Col("agent_name_pseudonym", pa.string(), _text(64)),
    Col("email_pseudonym", pa.string(), _text(64)),
    Col("phone_pseudonym", pa.string(), _text(64)),
    Col("source_modified_at", TS, _ts),
]

# Lineage columns of the target tables. They are not staged: staged data depends only on the
# object's content, so it is keyed by the ETag alone; the load binds these per object.
LINEAGE = [
    Col("source_key", pa.string(), _text(1024), nullable=False),
    Col("source_etag", pa.string(), _text(64), nullable=False),
    Col("batch_hour", TS, _ts, nullable=False),
    # With key, ETag, member and line: the exact raw version a row came from (berlin_rentals/raw_record.py).
    # NULL on rows loaded before they existed, and the version id too when the bucket was unversioned.
    Col("source_bucket", pa.string(), _text(63)),
    Col("source_version_id", pa.string(), _text(1024)),
]

FACT_FLATS = [
    Col("listing_id", pa.int64(), sa.BigInteger, nullable=False),
    Col("address_id", pa.int64(), sa.BigInteger),
    Col("agency_id", pa.int64(), sa.BigInteger),
    Col("publish_date", TS, _ts),
    Col("apartment_type", pa.string(), _text(64)),
    Col("assisted_living", pa.bool_(), sa.Boolean),
    Col("balcony", pa.bool_(), sa.Boolean),
    Col("base_rent", MONEY, _money),
    Col("built_in_kitchen", pa.bool_(), sa.Boolean),
    Col("calculated_total_rent", MONEY, _money),
    Col("calculated_total_rent_scope", pa.string(), _text(64)),
    Col("cellar", pa.bool_(), sa.Boolean),
    Col("certificate_of_eligibility_needed", pa.bool_(), sa.Boolean),
    Col("condition", pa.string(), _text(64)),
    Col("construction_year", pa.int32(), sa.Integer),
    Col("deposit", pa.string(), _text(1024)),
    Col("description_note", pa.string(), _text(MAX_TEXT_BYTES)),
    Col("floor", pa.int32(), sa.Integer),
    Col("free_from", pa.string(), _text(1024)),
    Col("garden", pa.bool_(), sa.Boolean),
    Col("guest_toilet", pa.bool_(), sa.Boolean),
    Col("handicapped_accessible", pa.bool_(), sa.Boolean),
    Col("heating_costs", MONEY, _money),
    Col("heating_costs_in_service_charge", pa.bool_(), sa.Boolean),
    Col("heating_type", pa.string(), _text(64)),
    Col("interior_quality", pa.string(), _text(64)),
    Col("last_modified_at", TS, _ts, nullable=False),
    Col("last_refurbishment", pa.int32(), sa.Integer),
    Col("lift", pa.bool_(), sa.Boolean),
    Col("living_space", AREA, _area),
    Col("number_of_floors", pa.int32(), sa.Integer),
    Col("number_of_rooms", ROOMS, _rooms),
    Col("pets_allowed", pa.string(), _text(64)),
    Col("service_charge", MONEY, _money),
    Col("state", pa.string(), _text(64)),
    Col("total_rent", MONEY, _money),
    Col("source_member", pa.string(), _text(1024)),
    Col("source_line", pa.int32(), sa.Integer),
    # implausible but loaded values, e.g. "base_rent_negative,living_space_implausible" (transform.py)
    Col("quality_flags", pa.string(), _text(512)),
    Col("agent_id", pa.int64(), sa.BigInteger),
    Col("listing_type", pa.string(), _text(64)),
    Col("title", pa.string(), _text(1024)),
    Col("number_of_bedrooms", ROOMS, _rooms),
    Col("number_of_bathrooms", ROOMS, _rooms),
    Col("parking_space_price", MONEY, _money),
    Col("number_of_parking_spaces", pa.int32(), sa.Integer),
    Col("parking_space_type", pa.string(), _text(64)),
    Col("latitude", DEGREES, _degrees),
    Col("longitude", DEGREES, _degrees),
    Col("created_at", TS, _ts),
    Col("has_pictures", pa.bool_(), sa.Boolean),
    Col("is_active", pa.bool_(), sa.Boolean),
    Col("energy_efficiency_class", pa.string(), _text(64)),
    Col("thermal_characteristic", AREA, _area),
    Col("firing_types", pa.string(), _text(256)),
    Col("energy_sources", pa.string(), _text(256)),
    Col("heating_type_enev2014", pa.string(), _text(64)),
    Col("usable_floor_space", AREA, _area),
    Col("use_as_flatshare_room", pa.bool_(), sa.Boolean),
    Col("has_courtage", pa.bool_(), sa.Boolean),
    Col("furnishing_note", pa.string(), _text(MAX_TEXT_BYTES)),
    Col("location_note", pa.string(), _text(MAX_TEXT_BYTES)),
    Col("other_note", pa.string(), _text(MAX_TEXT_BYTES)),
]

FLAT_SNAPSHOTS = [
    Col("listing_id", pa.int64(), sa.BigInteger, nullable=False),
    Col("last_modified_at", TS, _ts, nullable=False),
    Col("base_rent", MONEY, _money),
    Col("total_rent", MONEY, _money),
    Col("service_charge", MONEY, _money),
    Col("heating_costs", MONEY, _money),
    Col("calculated_total_rent", MONEY, _money),
    Col("living_space", AREA, _area),
    Col("number_of_rooms", ROOMS, _rooms),
    Col("quality_flags", pa.string(), _text(512)),
]

REJECTED_RECORDS = [
    Col("member", pa.string(), _text(1024), nullable=False),
    Col("line_number", pa.int32(), sa.Integer, nullable=False),
    Col("reason", pa.string(), _text(2048), nullable=False),
    Col("raw_line", pa.string(), _text(MAX_TEXT_BYTES)),
    Col("raw_line_bytes", pa.int64(), sa.BigInteger),
]

STAGED_TABLES: dict[str, list[Col]] = {
    "dim_city": DIM_CITY,
    "dim_district": DIM_DISTRICT,
    "dim_address": DIM_ADDRESS,
    "dim_agency": DIM_AGENCY,
    "dim_agent": DIM_AGENT,
    "fact_flats": FACT_FLATS,
    "flat_snapshots": FLAT_SNAPSHOTS,
    "rejected_records": REJECTED_RECORDS,
}


# The last column of every staged Parquet file and staging table: the ETag of the file the row came from. The
# staged data stays a function of the content (the ETag is its key), and a batch of many files COPYed into
# one staging table (berlin_rentals/warehouse/load.py) still tells each row's file, so each row gets
# its own file's lineage and the newest version across the batch wins. The transform's own tables lack it:
# staging adds it (berlin_rentals.staging.with_source_etag).
STAGED_ETAG = Col("source_etag", pa.string(), _text(64))


def arrow_schema(table: str) -> pa.Schema:
    """The transform's output of one table (without STAGED_ETAG)."""
    return pa.schema([pa.field(c.name, c.arrow, nullable=c.nullable) for c in STAGED_TABLES[table]])


def staged_schema(table: str) -> pa.Schema:
    """One staged Parquet file's columns: the transform's, then STAGED_ETAG."""
    return arrow_schema(table).append(pa.field(STAGED_ETAG.name, STAGED_ETAG.arrow, nullable=True))


def column_names(table: str) -> list[str]:
    return [c.name for c in STAGED_TABLES[table]]


def _fingerprint() -> str:
    described = ";".join(
        f"{t}:" + ",".join(f"{c.name} {c.arrow}" for c in [*cols, STAGED_ETAG]) for t, cols in STAGED_TABLES.items()
    )
    return hashlib.sha256(described.encode()).hexdigest()[:8]


# The staged tables' shape. Part of the transform's cache key and of the staged Parquet's prefix: a batch
# transformed or staged under another model (fewer columns) is never served in its place.
MODEL_FINGERPRINT = _fingerprint()
