"""Known answers for the model's columns of issue #13: on the real sample and on hand-made records.

The new fact columns (rooms, parking, coordinates, creation, pictures, state, listing type, energy, notes),
dim_agent (the contact of each listing, with keyed pseudonyms) and dim_district (address -> district -> city).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from berlin_rentals.archive import SourceLine, iter_lines
from berlin_rentals.batch import TRANSFORM_VERSION, output_variant
from berlin_rentals.config import ConfigError, Settings
from berlin_rentals.masking import PERSONAL_COLUMNS, Masker
from berlin_rentals.model import MODEL_FINGERPRINT
from berlin_rentals.staging import staged_prefix
from berlin_rentals.synthetic import read_sample_records
from berlin_rentals.transform import transform_lines

SALT = b"9b3e51c07fa2d864e1c9053ab7f62d18"
SALT_ID = "2026-12"
SALTED = {"ETL_MASK_SALT": SALT.decode(), "ETL_MASK_SALT_ID": SALT_ID}


def lines(*records: dict) -> list[SourceLine]:
    return [SourceLine("hand.json", n, json.dumps(r).encode()) for n, r in enumerate(records, start=1)]


def record(index: int = 0, **changes) -> dict:
    """Sample listing `index` with some keys set (None: the key removed)."""
    data = json.loads(json.dumps(read_sample_records()[index]["data"]))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return {"ok": True, "data": data}


def flat(*records: dict, **options) -> dict:
    batch = transform_lines(lines(*records), **options)
    assert batch.stats.rejected == 0, batch.tables["rejected_records"].to_pylist()
    return batch.tables["fact_flats"].to_pylist()[-1]


@pytest.fixture(scope="module")
def sample(sample_zip):
    batch = transform_lines(iter_lines(sample_zip, "sample.zip"), pseudonyms=Masker(SALT, SALT_ID))
    assert batch.stats.rejected == 0
    return batch


def by_id(batch) -> dict[int, dict]:
    return {row["listing_id"]: row for row in batch.tables["fact_flats"].to_pylist()}


# ---- the real sample --------------------------------------------------------------------------------


def test_the_sample_listing_without_coordinates_with_pictures_and_its_energy_and_creation(sample):
    row = by_id(sample)[56906504]
    assert (row["latitude"], row["longitude"]) == (None, None)
    assert row["has_pictures"] is True and row["is_active"] is True
    assert row["listing_type"] == "expose:ApartmentRent"
    assert row["title"] == "Nähe Hauptbhf., Charité + Friedrichstr./Exklusive, helle DG-Wohnung in Industriedenkmal"
    assert row["created_at"] == datetime(2017, 7, 14, 14, 20, 6, tzinfo=UTC)  # +02:00 in the source
    assert (row["thermal_characteristic"], row["heating_type_enev2014"]) == (Decimal("91.00"), "CENTRAL_HEATING")
    assert (row["number_of_bedrooms"], row["number_of_bathrooms"], row["firing_types"]) == (None, None, None)
    assert (row["use_as_flatshare_room"], row["has_courtage"]) == (None, None)  # NOT_APPLICABLE
    assert len(row["furnishing_note"]) == 750 and len(row["location_note"]) == 968 and len(row["other_note"]) == 526


def test_the_sample_listing_without_pictures_has_exact_coordinates_and_parking_spaces(sample):
    row = by_id(sample)[37221479]
    # the source's 52.42525540068026 / 13.371875429534166, to 1e-7 degrees (about 1 cm)
    assert (row["latitude"], row["longitude"]) == (Decimal("52.4252554"), Decimal("13.3718754"))
    assert row["has_pictures"] is False  # neither a title picture nor attachments
    assert (row["number_of_parking_spaces"], row["parking_space_price"], row["parking_space_type"]) == (4, None, None)
    assert (row["energy_efficiency_class"], row["usable_floor_space"]) == ("D", Decimal("37.67"))
    assert (row["firing_types"], row["energy_sources"]) == ("GAS", "GAS")
    assert (row["number_of_bedrooms"], row["number_of_bathrooms"]) == (Decimal("1.00"), Decimal("1.00"))


def test_the_sample_listing_with_a_priced_parking_space(sample):
    row = by_id(sample)[57040891]
    assert (row["parking_space_price"], row["number_of_parking_spaces"], row["parking_space_type"]) == (
        Decimal("75.00"),
        9,
        "OUTSIDE",
    )
    assert sum(r["has_pictures"] for r in by_id(sample).values()) == 9  # 2 of the 11 have none


def test_each_sample_listing_points_at_its_own_agent_and_the_district_of_its_address(sample):
    agents = {a["agent_id"]: a for a in sample.tables["dim_agent"].to_pylist()}
    addresses = {a["address_id"]: a for a in sample.tables["dim_address"].to_pylist()}
    districts = {d["district_id"]: d for d in sample.tables["dim_district"].to_pylist()}
    agencies = {a["agency_id"] for a in sample.tables["dim_agency"].to_pylist()}
    source = {int(r["data"]["id"]): r["data"] for r in read_sample_records()}
    for listing, row in by_id(sample).items():
        agent = agents[row["agent_id"]]
        assert agent["email"] == source[listing]["contactDetails_email"]
        assert agent["agency_id"] == row["agency_id"] and row["agency_id"] in agencies
        assert agent["email_pseudonym"] == Masker(SALT, SALT_ID).mask(agent["email"])
        district = districts[addresses[row["address_id"]]["district_id"]]
        assert district["district"] == source[listing]["realEstate_address_geoHierarchy_quarter_name"]
        assert district["geo_code"] == str(source[listing]["realEstate_address_geoHierarchy_quarter_geoCodeId"])
        assert district["city_id"] == addresses[row["address_id"]]["city_id"]
    assert len(agents) == 10  # 57040891 and 47988399 share their agent
    mitte = next(d for d in districts.values() if d["geo_code"] == "46")
    assert (mitte["district"], mitte["region"]) == ("Mitte (Mitte)", "Berlin")


# ---- hand-made records ------------------------------------------------------------------------------


def test_half_rooms_keep_their_halves():
    row = flat(record(realEstate_numberOfBedRooms=1.5, realEstate_numberOfBathRooms=0.5, realEstate_numberOfRooms=2.5))
    assert (row["number_of_bedrooms"], row["number_of_bathrooms"], row["number_of_rooms"]) == (
        Decimal("1.50"),
        Decimal("0.50"),
        Decimal("2.50"),
    )


def test_a_listing_without_coordinates_or_pictures_and_one_with_parking():
    bare = flat(
        record(
            realEstate_address_wgs84Coordinate_latitude=None,
            realEstate_address_wgs84Coordinate_longitude=None,
            realEstate_titlePicture_id=None,
            realEstate_attachments=None,
        )
    )
    assert (bare["latitude"], bare["longitude"], bare["has_pictures"]) == (None, None, False)
    parked = flat(
        record(
            realEstate_parkingSpacePrice=62.7,
            realEstate_numberOfParkingSpaces=2,
            realEstate_parkingSpaceType="UNDERGROUND_GARAGE",
            realEstate_address_wgs84Coordinate_latitude=52.474839346730306,
            realEstate_address_wgs84Coordinate_longitude=-13.483885706349275,
        )
    )
    assert (parked["parking_space_price"], parked["number_of_parking_spaces"]) == (Decimal("62.70"), 2)
    assert parked["parking_space_type"] == "UNDERGROUND_GARAGE"
    assert (parked["latitude"], parked["longitude"]) == (Decimal("52.4748393"), Decimal("-13.4838857"))


def test_pictures_come_from_the_title_picture_or_a_picture_attachment_only():
    floor_plan = [{"attachment": [{"@xsi.type": "common:PDFDocument", "@id": "7"}]}]
    picture = [
        {"@xlink.href": "x", "attachment": [{"@xsi.type": "common:PDFDocument"}, {"@xsi.type": "common:Picture"}]}
    ]
    no_title = {"realEstate_titlePicture_id": None}
    assert flat(record(**no_title, realEstate_attachments=floor_plan))["has_pictures"] is False
    assert flat(record(**no_title, realEstate_attachments=picture))["has_pictures"] is True
    assert flat(record(realEstate_titlePicture_id="1", realEstate_attachments=None))["has_pictures"] is True
    assert flat(record(realEstate_titlePicture_id="", realEstate_attachments=None))["has_pictures"] is False


def test_a_house_is_marked_by_its_listing_type_and_the_state_sets_is_active():
    house = flat(record(realEstate_xsi_type="expose:HouseRent", realEstate_state="INACTIVE"))
    assert (house["listing_type"], house["is_active"], house["state"]) == ("expose:HouseRent", False, "INACTIVE")
    assert flat(record(realEstate_state=None))["is_active"] is None
    assert flat(record(realEstate_state="NO_INFORMATION"))["is_active"] is None


def test_lists_become_readable_text_and_flags_follow_the_source():
    row = flat(
        record(
            realEstate_firingTypes=[{"firingType": "GAS"}, {"firingType": "DISTRICT_HEATING"}, {"firingType": "GAS"}],
            realEstate_energySourcesEnev2014_energySourceEnev2014=["GAS", "NO_INFORMATION", "SOLAR_HEATING"],
            realEstate_useAsFlatshareRoom="true",
            realEstate_courtage_hasCourtage="YES",
        )
    )
    assert (row["firing_types"], row["energy_sources"]) == ("GAS, DISTRICT_HEATING", "GAS, SOLAR_HEATING")
    assert (row["use_as_flatshare_room"], row["has_courtage"]) == (True, True)


def test_a_sentinel_in_a_number_or_a_timestamp_loads_as_null_instead_of_rejecting_the_listing():
    row = flat(
        record(
            realEstate_baseRent="NO_INFORMATION",
            realEstate_livingSpace="",
            realEstate_numberOfBedRooms="NOT_APPLICABLE",
            realEstate_parkingSpacePrice=" ",
            realEstate_numberOfParkingSpaces="",
            realEstate_constructionYear="NO_INFORMATION",
            realEstate_address_wgs84Coordinate_latitude="",
            creation="",
        )
    )
    assert row["listing_id"] == int(record()["data"]["id"])
    for column in (
        "base_rent",
        "living_space",
        "number_of_bedrooms",
        "parking_space_price",
        "number_of_parking_spaces",
    ):
        assert row[column] is None, column
    assert (row["construction_year"], row["latitude"], row["created_at"]) == (None, None, None)
    # text that is not a sentinel still names the field that cannot be a number
    batch = transform_lines(lines(record(realEstate_parkingSpacePrice="teuer")))
    (reason,) = batch.tables["rejected_records"].column("reason").to_pylist()
    assert "invalid_value" in reason and "realEstate_parkingSpacePrice" in reason


# ---- agents of one agency, and their pseudonyms -------------------------------------------------------


def two_agents_of_one_agency() -> tuple[dict, dict]:
    first = record(0, companyWideCustomerId="001.999999", contactDetails_email="anna@agency.example")
    second = record(1, companyWideCustomerId="001.999999", contactDetails_email="bert@agency.example")
    second["data"].update(contactDetails_firstname="Bert", contactDetails_lastname="Brandt")
    second["data"]["contactDetails_phoneNumber"] = "030 1234567"
    return first, second


def test_a_listing_of_an_agency_with_two_agents_keeps_its_own_agent():
    first, second = two_agents_of_one_agency()
    # the second listing is the agency's newest: dim_agency's contact columns are its agent's
    assert first["data"]["modification"] < second["data"]["modification"]
    batch = transform_lines(lines(first, second))
    facts = batch.tables["fact_flats"].to_pylist()
    agents = {a["agent_id"]: a for a in batch.tables["dim_agent"].to_pylist()}
    (agency,) = batch.tables["dim_agency"].to_pylist()
    assert facts[0]["agency_id"] == facts[1]["agency_id"] == agency["agency_id"]
    assert facts[0]["agent_id"] != facts[1]["agent_id"]
    assert agents[facts[0]["agent_id"]]["email"] == "anna@agency.example"
    assert agents[facts[1]["agent_id"]]["email"] == "bert@agency.example"
    assert (agents[facts[1]["agent_id"]]["firstname"], agents[facts[1]["agent_id"]]["lastname"]) == ("Bert", "Brandt")
    assert agency["email"] == "bert@agency.example"
    assert {a["agency_id"] for a in agents.values()} == {agency["agency_id"]}


def test_pseudonyms_are_the_keyed_hash_of_the_raw_values_whatever_the_masking_and_null_without_a_salt():
    first, second = two_agents_of_one_agency()
    key = Masker(SALT, SALT_ID)
    clear = transform_lines(lines(first, second)).tables["dim_agent"].to_pylist()
    keyed = transform_lines(lines(first, second), pseudonyms=key).tables["dim_agent"].to_pylist()
    masked = transform_lines(lines(first, second), masker=key, pseudonyms=key).tables["dim_agent"].to_pylist()
    assert all(a[c] is None for a in clear for c in ("agent_name_pseudonym", "email_pseudonym", "phone_pseudonym"))
    bert = next(a for a in keyed if a["email"] == "bert@agency.example")
    assert bert["agent_name_pseudonym"] == key.mask("Bert Brandt")
    assert (bert["email_pseudonym"], bert["phone_pseudonym"]) == (
        key.mask("bert@agency.example"),
        key.mask("030 1234567"),
    )
    # masking on: the raw columns are hashed too, and the pseudonyms are still those of the raw values
    assert {a["email_pseudonym"] for a in masked} == {a["email_pseudonym"] for a in keyed}
    assert {a["email"] for a in masked} == {key.mask(a["email"]) for a in keyed}
    assert all(a[c] is None or a[c].startswith("h:") for a in masked for c in PERSONAL_COLUMNS)
    assert any(a["phone_number"] for a in masked)
    everything = json.dumps(
        [str(t.to_pylist()) for t in transform_lines(lines(first, second), pseudonyms=key).tables.values()]
    )
    assert SALT.decode() not in everything  # the salt itself is never stored


def test_the_cache_key_and_the_staged_prefix_follow_the_model_and_the_salts():
    assert output_variant() == f"v{TRANSFORM_VERSION}-m{MODEL_FINGERPRINT}-r{16 * 1024**2}-n1000"
    keyed, other = (
        output_variant(pseudonyms=Masker(SALT, SALT_ID)),
        output_variant(pseudonyms=Masker(b"0d7c4f1ea95b2836c1e04a9f7b5d3e62", "2027-01")),
    )
    assert keyed != other and keyed.startswith(output_variant()) and keyed.endswith(f"-keyed-{SALT_ID}")
    assert output_variant(Masker(SALT, SALT_ID), Masker(SALT, SALT_ID)) not in (
        keyed,
        output_variant(Masker(SALT, SALT_ID)),
    )
    assert transform_lines(lines(record()), pseudonyms=Masker(SALT, SALT_ID)).variant == keyed
    assert staged_prefix("clean/", "e" * 32, keyed) == f"clean/{keyed}/etag={'e' * 32}/"
    assert staged_prefix("clean/", "e" * 32) == f"clean/{output_variant()}/etag={'e' * 32}/"


def test_the_transform_cache_key_changes_with_the_salt_and_the_pseudonymizer_needs_no_masking():
    from berlin_rentals.source import SourceObject
    from tasks.transform import etag_cache_key

    source = SourceObject("rentals-raw", "raw/a.zip", "e" * 32, 1, datetime(2019, 1, 13, tzinfo=UTC))
    base = {"WAREHOUSE_URL": "postgresql://x"}

    def key(env: dict) -> str:
        return etag_cache_key(None, {"settings": Settings.from_env(base | env), "source": source})

    plain, salted = key({}), key(SALTED)
    masked = key(SALTED | {"ETL_MASK_PERSONAL_DATA": "1"})
    other = key({"ETL_MASK_SALT": "f07a3d91c4e8b25d6a1f0e39c7b48d52", "ETL_MASK_SALT_ID": "2027-01"})
    assert len({plain, salted, masked, other}) == 4
    assert all(k.endswith("e" * 32) and f"m{MODEL_FINGERPRINT}" in k for k in (plain, salted, masked))
    assert SALT.decode() not in salted + masked
    assert Settings.from_env(base).pseudonymizer() is None
    assert Settings.from_env(base | SALTED).masker() is None  # masking stays off
    with pytest.raises(ConfigError):
        Settings.from_env(base | SALTED | {"ETL_MASK_SALT": "short"}).pseudonymizer()


def test_every_setting_that_changes_the_transforms_output_is_in_its_cache_key():
    """A longer line cap keeps lines a shorter one rejects; a larger raw-text budget keeps more raw text.
    Raising either and running a file again must not answer from the old result (issue #23), nor stage
    over the Parquet an older pointer's counts describe."""
    from berlin_rentals.source import SourceObject
    from tasks.transform import etag_cache_key, output_of

    source = SourceObject("rentals-raw", "raw/a.zip", "e" * 32, 1, datetime(2019, 1, 13, tzinfo=UTC))
    base = {"WAREHOUSE_URL": "postgresql://x"}
    variants = [
        base,
        base | {"ETL_MAX_LINE_BYTES": str(1024**2)},
        base | {"ETL_MAX_REJECTED_RAW_BYTES": str(1024)},
    ]
    settings = [Settings.from_env(env) for env in variants]
    keys = {etag_cache_key(None, {"settings": s, "source": source}) for s in settings}
    prefixes = {staged_prefix("clean/", "e" * 32, output_of(s)) for s in settings}
    assert len(keys) == len(prefixes) == len(variants)
    # and the batch a transform makes under those settings names the same variant its key and prefix do
    batch = transform_lines(lines(record()), max_rejected_raw_bytes=1024, max_line_bytes=64 * 1024**2)
    assert batch.variant == output_of(settings[2])


def test_nothing_computed_from_the_salt_reaches_the_cache_key_or_the_staged_prefix():
    """A 48-bit HMAC fingerprint of the salt was in every staged prefix, the ledger and the lineage: with it,
    salt guesses were tested offline. The prefix now depends on the salt's name alone, whatever the salt."""
    other = b"0d7c4f1ea95b2836c1e04a9f7b5d3e62"
    for masked in (False, True):
        one = output_variant(Masker(SALT, SALT_ID) if masked else None, Masker(SALT, SALT_ID))
        assert one == output_variant(Masker(other, SALT_ID) if masked else None, Masker(other, SALT_ID))
        assert one.endswith(f"-keyed-{SALT_ID}") and (f"-masked-{SALT_ID}-" in one) == masked
