"""The pure transform: real records from shared/data, and hand-made bad lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from berlin_rentals.archive import SourceLine, iter_lines
from berlin_rentals.keys import surrogate_key
from berlin_rentals.model import arrow_schema
from berlin_rentals.synthetic import read_sample_records
from berlin_rentals.transform import transform_lines


def lines_of(*records, member="m.json") -> list[SourceLine]:
    out = []
    for n, record in enumerate(records, start=1):
        raw = record if isinstance(record, bytes) else json.dumps(record).encode()
        out.append(SourceLine(member, n, raw))
    return out


@pytest.fixture(scope="module")
def sample_batch(sample_zip):
    return transform_lines(iter_lines(sample_zip, "sample.zip"))


@pytest.fixture(scope="module")
def sample_record(sample_zip):
    return next(r for r in read_sample_records(sample_zip) if r["data"]["id"] == "56906504")


def fact_row(batch, listing_id):
    rows = [r for r in batch.tables["fact_flats"].to_pylist() if r["listing_id"] == listing_id]
    assert len(rows) == 1
    return rows[0]


def test_every_table_has_the_model_schema(sample_batch):
    for name, table in sample_batch.tables.items():
        assert table.schema.equals(arrow_schema(name)), name


def test_the_seed_known_answer(sample_batch):
    flat = fact_row(sample_batch, 56906504)
    assert flat["base_rent"] == Decimal("1715.19")
    assert flat["number_of_rooms"] == Decimal("3")
    assert flat["living_space"] == Decimal("115")
    assert flat["balcony"] is True
    assert flat["publish_date"] == datetime(2017, 7, 14, 14, 20, 6, tzinfo=UTC)
    address = next(a for a in sample_batch.tables["dim_address"].to_pylist() if a["address_id"] == flat["address_id"])
    assert (address["postcode"], address["quarter"], address["region"]) == ("10115", "Mitte (Mitte)", "Berlin")
    city = next(c for c in sample_batch.tables["dim_city"].to_pylist() if c["city_id"] == address["city_id"])
    assert (city["city"], city["country"]) == ("Berlin", "Deutschland")


def test_all_sample_records_load_and_agencies_are_keyed_by_customer_id(sample_batch, sample_zip):
    stats = sample_batch.stats
    assert (stats.lines_read, stats.listings, stats.rejected) == (11, 11, 0)
    customers = {r["data"]["companyWideCustomerId"] for r in read_sample_records(sample_zip)}
    agencies = sample_batch.tables["dim_agency"].to_pylist()
    assert {a["customer_id"] for a in agencies} == customers
    assert all(a["agency_id"] == surrogate_key("customer", a["customer_id"]) for a in agencies)
    assert sample_batch.rows("flat_snapshots") == 11


def test_booleans_sentinels_and_yes_no(sample_record):
    data = dict(sample_record["data"])
    data |= {
        "realEstate_cellar": "NOT_APPLICABLE",
        "realEstate_guestToilet": "YES",
        "realEstate_heatingCostsInServiceCharge": "NO",
        "realEstate_lift": "false",
        "realEstate_petsAllowed": "NO_INFORMATION",
        "realEstate_apartmentType": "NO_INFORMATION",
        "realEstate_condition": "WELL_KEPT",
    }
    flat = transform_lines(lines_of({"ok": True, "data": data})).tables["fact_flats"].to_pylist()[0]
    assert flat["cellar"] is None
    assert flat["guest_toilet"] is True
    assert flat["heating_costs_in_service_charge"] is False
    assert flat["lift"] is False
    assert flat["pets_allowed"] is None and flat["apartment_type"] is None
    assert flat["condition"] == "WELL_KEPT"


def test_numbers_mixing_ints_and_floats_stay_exact(sample_record):
    data = dict(sample_record["data"]) | {
        "realEstate_baseRent": 263,
        "realEstate_numberOfRooms": 2.5,
        "realEstate_livingSpace": 37.67,
        "realEstate_serviceCharge": 62.64,
    }
    flat = transform_lines(lines_of({"ok": True, "data": data})).tables["fact_flats"].to_pylist()[0]
    assert flat["base_rent"] == Decimal("263.00")
    assert flat["number_of_rooms"] == Decimal("2.5")
    assert flat["living_space"] == Decimal("37.67")
    assert flat["service_charge"] == Decimal("62.64")


def test_free_text_fields_are_kept_as_text(sample_record):
    data = dict(sample_record["data"]) | {
        "realEstate_deposit": "5.400,00 EUR",
        "realEstate_freeFrom": "nach Vereinbarung",
    }
    flat = transform_lines(lines_of({"ok": True, "data": data})).tables["fact_flats"].to_pylist()[0]
    assert (flat["deposit"], flat["free_from"]) == ("5.400,00 EUR", "nach Vereinbarung")


def test_modification_is_utc_and_the_newest_version_in_a_file_wins(sample_record):
    old = dict(sample_record["data"]) | {"modification": "2019-01-12T11:32:11.975Z", "realEstate_baseRent": 100}
    new = dict(sample_record["data"]) | {"modification": "2019-01-13T08:00:00.000Z", "realEstate_baseRent": 200}
    batch = transform_lines(lines_of({"ok": True, "data": new}, {"ok": True, "data": old}))
    flat = batch.tables["fact_flats"].to_pylist()
    assert len(flat) == 1 and flat[0]["base_rent"] == Decimal("200.00")
    assert flat[0]["last_modified_at"] == datetime(2019, 1, 13, 8, tzinfo=UTC)
    assert (flat[0]["source_member"], flat[0]["source_line"]) == ("m.json", 1)
    assert batch.stats.older_versions_in_file == 1


BAD_LINES = {
    "not_json": b'{"ok": true, "data": {"id": "1"',
    "not_an_object": b"[1, 2, 3]",
    "not_ok": json.dumps({"ok": False, "data": {"id": "5"}}).encode(),
    "no_data": json.dumps({"ok": True}).encode(),
    "no_id": json.dumps({"ok": True, "data": {"modification": "2019-01-12T11:32:11.975Z"}}).encode(),
    "bad_id": json.dumps({"ok": True, "data": {"id": "12ab", "modification": "2019-01-12T11:32:11.975Z"}}).encode(),
    "rent_is_text": json.dumps({"ok": True, "data": {"id": "7", "realEstate_baseRent": "viel"}}).encode(),
    "bad_timestamp": json.dumps({"ok": True, "data": {"id": "8", "modification": "gestern"}}).encode(),
    "bad_boolean": json.dumps(
        {
            "ok": True,
            "data": {"id": "9", "modification": "2019-01-12T11:32:11.975Z", "realEstate_balcony": "vielleicht"},
        }
    ).encode(),
    "no_timestamp": json.dumps({"ok": True, "data": {"id": "10"}}).encode(),
}
EXPECTED_CODE = {"rent_is_text": "invalid_value", "bad_timestamp": "invalid_value", "bad_boolean": "invalid_value"}


def test_bad_lines_are_kept_with_their_reason_and_good_lines_still_load(sample_record):
    lines = lines_of(sample_record, *BAD_LINES.values(), sample_record)
    batch = transform_lines(lines)
    assert batch.stats.listings == 1
    assert batch.stats.rejected == len(BAD_LINES)
    rejected = batch.tables["rejected_records"].to_pylist()
    assert [r["line_number"] for r in rejected] == list(range(2, 2 + len(BAD_LINES)))
    for row, (kind, raw) in zip(rejected, BAD_LINES.items(), strict=True):
        code = EXPECTED_CODE.get(kind, kind)
        assert row["reason"].startswith(f"m.json line {row['line_number']}: {code}:"), (kind, row["reason"])
        assert row["raw_line"] == raw.decode()
        assert row["raw_line_bytes"] == len(raw)
    reasons = {r["line_number"]: r["reason"] for r in rejected}
    assert "realEstate_baseRent" in reasons[8]
    assert "realEstate_balcony" in reasons[10]


def test_surrogate_keys_are_deterministic_and_distinct():
    assert surrogate_key("customer", "001.377811") == surrogate_key("customer", "001.377811")
    assert surrogate_key("customer", "001.377811") != surrogate_key("customer", "001.377812")
    assert surrogate_key("a", None, "b") != surrogate_key("a", "b", None)
    assert -(2**63) <= surrogate_key("x") < 2**63


def test_text_is_capped_at_the_redshift_varchar_limit_without_splitting_characters(sample_record):
    data = dict(sample_record["data"]) | {"realEstate_descriptionNote": "ä" * 40000 + "\x00"}
    flat = transform_lines(lines_of({"ok": True, "data": data})).tables["fact_flats"].to_pylist()[0]
    encoded = flat["description_note"].encode()
    assert len(encoded) <= 65535 and set(flat["description_note"]) == {"ä"}


def test_real_records_carry_no_quality_flag_and_no_unknown_field(sample_batch):
    assert sample_batch.stats.flagged == 0 and not sample_batch.stats.unknown_fields
    assert set(sample_batch.tables["fact_flats"].column("quality_flags").to_pylist()) == {None}


def test_quality_flags_name_each_implausible_amount_in_a_fixed_order():
    from berlin_rentals.values import quality_flags

    assert quality_flags({"base_rent": Decimal("1715.19"), "living_space": Decimal("115")}) is None
    assert quality_flags(
        {
            "base_rent": Decimal("0"),
            "living_space": Decimal("-3"),
            "number_of_rooms": Decimal("45"),
            "service_charge": Decimal("-1"),
        }
    ) == ("base_rent_implausible,service_charge_negative,living_space_negative,number_of_rooms_implausible")
    assert quality_flags({"base_rent": None, "heating_costs": Decimal("0")}) is None


def test_a_flag_travels_with_the_newest_version_only(sample_record):
    old = {
        **sample_record,
        "data": {**sample_record["data"], "realEstate_baseRent": -1, "modification": "2019-01-01T00:00:00.000Z"},
    }
    batch = transform_lines(lines_of(old, sample_record))
    assert fact_row(batch, 56906504)["quality_flags"] is None and batch.stats.flagged == 0
    batch = transform_lines(
        lines_of(sample_record, old | {"data": old["data"] | {"modification": "2030-01-01T00:00:00.000Z"}})
    )
    assert fact_row(batch, 56906504)["quality_flags"] == "base_rent_negative" and batch.stats.flagged == 1
    snapshot = batch.tables["flat_snapshots"].to_pylist()[0]
    assert snapshot["quality_flags"] == "base_rent_negative"
