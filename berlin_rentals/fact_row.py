"""The fact row of one listing: its columns in the order of the model's fact_flats, each value checked
against what its warehouse column holds (a value it cannot hold rejects the line, naming the field)."""

from __future__ import annotations

from datetime import datetime

from berlin_rentals.archive import SourceLine
from berlin_rentals.listing import Listing, flag
from berlin_rentals.model import MAX_TEXT_BYTES
from berlin_rentals.values import (
    AREA_LIMIT,
    DEGREE_STEP,
    DEGREES_LIMIT,
    MONEY_LIMIT,
    ROOMS_LIMIT,
    as_utc,
    cap_text,
    capped_text,
    checked_decimal,
    checked_int32,
    has_pictures,
    quality_flags,
    readable_list,
)

# Enum-like source values (condition, heating type, ...) are VARCHAR(64): a longer one is capped, not refused.
_ENUM = 64
_ACTIVE = "ACTIVE"


def fact_row(
    listing: Listing,
    line: SourceLine,
    lid: int,
    modified: datetime,
    address_id: int,
    agency_id: int,
    agent_id: int | None,
) -> tuple:
    """The listing's fact_flats row, pointing at its address, agency and agent."""
    amounts = {
        "base_rent": checked_decimal(listing.base_rent, "realEstate_baseRent", MONEY_LIMIT),
        "calculated_total_rent": checked_decimal(
            listing.calculated_total_rent, "realEstate_calculatedTotalRent", MONEY_LIMIT
        ),
        "heating_costs": checked_decimal(listing.heating_costs, "realEstate_heatingCosts", MONEY_LIMIT),
        "living_space": checked_decimal(listing.living_space, "realEstate_livingSpace", AREA_LIMIT),
        "number_of_rooms": checked_decimal(listing.number_of_rooms, "realEstate_numberOfRooms", ROOMS_LIMIT),
        "service_charge": checked_decimal(listing.service_charge, "realEstate_serviceCharge", MONEY_LIMIT),
        "total_rent": checked_decimal(listing.total_rent, "realEstate_totalRent", MONEY_LIMIT),
    }
    state = capped_text(listing.state, _ENUM)
    return (
        lid,
        address_id,
        agency_id,
        as_utc(listing.publish_date),
        capped_text(listing.apartment_type, _ENUM),
        flag(listing.assisted_living, "assisted_living"),
        flag(listing.balcony, "balcony"),
        amounts["base_rent"],
        flag(listing.built_in_kitchen, "built_in_kitchen"),
        amounts["calculated_total_rent"],
        capped_text(listing.calculated_total_rent_scope, _ENUM),
        flag(listing.cellar, "cellar"),
        flag(listing.certificate_of_eligibility_needed, "certificate_of_eligibility_needed"),
        capped_text(listing.condition, _ENUM),
        checked_int32(listing.construction_year, "realEstate_constructionYear"),
        capped_text(listing.deposit, 1024),
        capped_text(listing.description_note, MAX_TEXT_BYTES),
        checked_int32(listing.floor, "realEstate_floor"),
        capped_text(listing.free_from, 1024),
        flag(listing.garden, "garden"),
        flag(listing.guest_toilet, "guest_toilet"),
        flag(listing.handicapped_accessible, "handicapped_accessible"),
        amounts["heating_costs"],
        flag(listing.heating_costs_in_service_charge, "heating_costs_in_service_charge"),
        capped_text(listing.heating_type, _ENUM),
        capped_text(listing.interior_quality, _ENUM),
        modified,
        checked_int32(listing.last_refurbishment, "realEstate_lastRefurbishment"),
        flag(listing.lift, "lift"),
        amounts["living_space"],
        checked_int32(listing.number_of_floors, "realEstate_numberOfFloors"),
        amounts["number_of_rooms"],
        capped_text(listing.pets_allowed, _ENUM),
        amounts["service_charge"],
        state,
        amounts["total_rent"],
        line.member,
        line.line_number,
        quality_flags(amounts),
        agent_id,
        capped_text(listing.listing_type, _ENUM),
        capped_text(listing.title, 1024),
        checked_decimal(listing.bedrooms, "realEstate_numberOfBedRooms", ROOMS_LIMIT),
        checked_decimal(listing.bathrooms, "realEstate_numberOfBathRooms", ROOMS_LIMIT),
        checked_decimal(listing.parking_space_price, "realEstate_parkingSpacePrice", MONEY_LIMIT),
        checked_int32(listing.number_of_parking_spaces, "realEstate_numberOfParkingSpaces"),
        capped_text(listing.parking_space_type, _ENUM),
        checked_decimal(listing.latitude, "realEstate_address_wgs84Coordinate_latitude", DEGREES_LIMIT, DEGREE_STEP),
        checked_decimal(listing.longitude, "realEstate_address_wgs84Coordinate_longitude", DEGREES_LIMIT, DEGREE_STEP),
        as_utc(listing.creation),
        has_pictures(listing.title_picture_id, listing.attachments),
        None if state is None else state == _ACTIVE,
        capped_text(listing.energy_efficiency_class, _ENUM),
        checked_decimal(listing.thermal_characteristic, "realEstate_thermalCharacteristic", AREA_LIMIT),
        cap_text(readable_list(listing.firing_types), 256),
        cap_text(readable_list(listing.energy_sources), 256),
        capped_text(listing.heating_type_enev2014, _ENUM),
        checked_decimal(listing.usable_floor_space, "realEstate_usableFloorSpace", AREA_LIMIT),
        flag(listing.use_as_flatshare_room, "use_as_flatshare_room"),
        flag(listing.has_courtage, "has_courtage"),
        capped_text(listing.furnishing_note, MAX_TEXT_BYTES),
        capped_text(listing.location_note, MAX_TEXT_BYTES),
        capped_text(listing.other_note, MAX_TEXT_BYTES),
    )
