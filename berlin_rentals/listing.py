"""A listing as the model reads it from a line's `data`: its fields, their source keys and types.

Only the fields the warehouse model needs are declared; msgspec skips the rest of the
~150 keys (and the multi-kilobyte ad links) without building Python objects for them.
The decoding itself, and its reasons for refusing a line, are in berlin_rentals/decode.py.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec

from berlin_rentals.values import FALSE_VALUES, SENTINELS, TRUE_VALUES, Flag, RejectedLine, Text

FIELD_SOURCE_KEYS = {
    "id": "id",
    "modification": "modification",
    "publish_date": "publishDate",
    "creation": "creation",
    "last_modification_date": "realEstate_lastModificationDate",
    "customer_id": "companyWideCustomerId",
    "company": "contactDetails_company",
    "salutation": "contactDetails_salutation",
    "firstname": "contactDetails_firstname",
    "lastname": "contactDetails_lastname",
    "email": "contactDetails_email",
    "phone_number": "contactDetails_phoneNumber",
    "phone_area_code": "contactDetails_phoneNumberAreaCode",
    "phone_country_code": "contactDetails_phoneNumberCountryCode",
    "phone_subscriber": "contactDetails_phoneNumberSubscriber",
    "cell_phone_number": "contactDetails_cellPhoneNumber",
    "cell_phone_area_code": "contactDetails_cellPhoneNumberAreaCode",
    "cell_phone_country_code": "contactDetails_cellPhoneNumberCountryCode",
    "cell_phone_subscriber": "contactDetails_cellPhoneNumberSubscriber",
    "address_city": "realEstate_address_city",
    "postcode": "realEstate_address_postcode",
    "address_quarter": "realEstate_address_quarter",
    "street": "realEstate_address_street",
    "house_number": "realEstate_address_houseNumber",
    "geo_city": "realEstate_address_geoHierarchy_city_name",
    "geo_country": "realEstate_address_geoHierarchy_country_name",
    "geo_region": "realEstate_address_geoHierarchy_region_name",
    "geo_quarter": "realEstate_address_geoHierarchy_quarter_name",
    "apartment_type": "realEstate_apartmentType",
    "assisted_living": "realEstate_assistedLiving",
    "balcony": "realEstate_balcony",
    "base_rent": "realEstate_baseRent",
    "built_in_kitchen": "realEstate_builtInKitchen",
    "calculated_total_rent": "realEstate_calculatedTotalRent",
    "calculated_total_rent_scope": "realEstate_calculatedTotalRentScope",
    "cellar": "realEstate_cellar",
    "certificate_of_eligibility_needed": "realEstate_certificateOfEligibilityNeeded",
    "condition": "realEstate_condition",
    "construction_year": "realEstate_constructionYear",
    "deposit": "realEstate_deposit",
    "description_note": "realEstate_descriptionNote",
    "floor": "realEstate_floor",
    "free_from": "realEstate_freeFrom",
    "garden": "realEstate_garden",
    "guest_toilet": "realEstate_guestToilet",
    "handicapped_accessible": "realEstate_handicappedAccessible",
    "heating_costs": "realEstate_heatingCosts",
    "heating_costs_in_service_charge": "realEstate_heatingCostsInServiceCharge",
    "heating_type": "realEstate_heatingType",
    "interior_quality": "realEstate_interiorQuality",
    "last_refurbishment": "realEstate_lastRefurbishment",
    "lift": "realEstate_lift",
    "living_space": "realEstate_livingSpace",
    "number_of_floors": "realEstate_numberOfFloors",
    "number_of_rooms": "realEstate_numberOfRooms",
    "pets_allowed": "realEstate_petsAllowed",
    "service_charge": "realEstate_serviceCharge",
    "state": "realEstate_state",
    "total_rent": "realEstate_totalRent",
    "geo_quarter_code": "realEstate_address_geoHierarchy_quarter_geoCodeId",
    "bedrooms": "realEstate_numberOfBedRooms",
    "bathrooms": "realEstate_numberOfBathRooms",
    "parking_space_price": "realEstate_parkingSpacePrice",
    "number_of_parking_spaces": "realEstate_numberOfParkingSpaces",
    "parking_space_type": "realEstate_parkingSpaceType",
    "latitude": "realEstate_address_wgs84Coordinate_latitude",
    "longitude": "realEstate_address_wgs84Coordinate_longitude",
    "title_picture_id": "realEstate_titlePicture_id",
    "attachments": "realEstate_attachments",
    "listing_type": "realEstate_xsi_type",
    "title": "realEstate_title",
    "energy_efficiency_class": "realEstate_energyCertificate_energyEfficiencyClass",
    "thermal_characteristic": "realEstate_thermalCharacteristic",
    "firing_types": "realEstate_firingTypes",
    "energy_sources": "realEstate_energySourcesEnev2014_energySourceEnev2014",
    "heating_type_enev2014": "realEstate_heatingTypeEnev2014",
    "usable_floor_space": "realEstate_usableFloorSpace",
    "use_as_flatshare_room": "realEstate_useAsFlatshareRoom",
    "has_courtage": "realEstate_courtage_hasCourtage",
    "furnishing_note": "realEstate_furnishingNote",
    "location_note": "realEstate_locationNote",
    "other_note": "realEstate_otherNote",
}

# Keys of real records that the model does not use (seen in real batches; see shared/data/README.md).
# A key in neither this list nor FIELD_SOURCE_KEYS is unknown: ignored, and counted per file.
IGNORED_SOURCE_KEYS = (
    "adLinkForJSONP_xlink_href",
    "adLinkForXMLData_xlink_href",
    "contactDetails_address_city",
    "contactDetails_address_houseNumber",
    "contactDetails_address_postcode",
    "contactDetails_address_street",
    "contactDetails_countryCode",
    "contactDetails_faxNumber",
    "contactDetails_faxNumberAreaCode",
    "contactDetails_faxNumberCountryCode",
    "contactDetails_faxNumberSubscriber",
    "contactDetails_homepageUrl",
    "contactDetails_id",
    "contactDetails_realtorLogo",
    "contactFormConfiguration_addressField",
    "contactFormConfiguration_applicationPackageCompletedField",
    "contactFormConfiguration_emailAddressField",
    "contactFormConfiguration_employmentRelationshipField",
    "contactFormConfiguration_firstnameField",
    "contactFormConfiguration_freemiumSettings_duration",
    "contactFormConfiguration_incomeField",
    "contactFormConfiguration_lastnameField",
    "contactFormConfiguration_messageField",
    "contactFormConfiguration_moveInDateField",
    "contactFormConfiguration_numberOfPersonsField",
    "contactFormConfiguration_petsInHouseholdField",
    "contactFormConfiguration_phoneNumberField",
    "contactFormConfiguration_premiumProfileRequired",
    "contactFormConfiguration_salutationField",
    "contactFormType",
    "imprintLink_xlink_href",
    "realEstate_address_geoHierarchy_city_fullGeoCodeId",
    "realEstate_address_geoHierarchy_city_geoCodeId",
    "realEstate_address_geoHierarchy_continent_fullGeoCodeId",
    "realEstate_address_geoHierarchy_continent_geoCodeId",
    "realEstate_address_geoHierarchy_country_fullGeoCodeId",
    "realEstate_address_geoHierarchy_country_geoCodeId",
    "realEstate_address_geoHierarchy_neighbourhood_geoCodeId",
    "realEstate_address_geoHierarchy_quarter_fullGeoCodeId",
    "realEstate_address_geoHierarchy_region_fullGeoCodeId",
    "realEstate_address_geoHierarchy_region_geoCodeId",
    "realEstate_buildingEnergyRatingType",
    "realEstate_creationDate",
    "realEstate_energyCertificate_energyCertificateAvailability",
    "realEstate_energyCertificate_energyCertificateCreationDate",
    "realEstate_energyConsumptionContainsWarmWater",
    "realEstate_energyPerformanceCertificate",
    "realEstate_externalId",
    "realEstate_floorplan",
    "realEstate_groupNumber",
    "realEstate_id",
    "realEstate_referencePriceApiCall",
    "realEstate_referencePriceServiceCall",
    "realEstate_titlePicture_creation",
    "realEstate_titlePicture_floorplan",
    "realEstate_titlePicture_modification",
    "realEstate_titlePicture_publishDate",
    "realEstate_titlePicture_title",
    "realEstate_titlePicture_titlePicture",
    "realEstate_titlePicture_urls",
    "realtorValuationJSONLink_xlink_href",
    "realtorValuationV2JSONLink_xlink_href",
    "realtorValuationV2JSONPLink_xlink_href",
    "xlink_href",
)


class Listing(msgspec.Struct, rename=FIELD_SOURCE_KEYS, gc=False):
    id: str | int | None = None
    modification: datetime | None = None
    publish_date: datetime | None = None
    creation: datetime | None = None
    last_modification_date: datetime | None = None
    customer_id: Text = None
    company: Text = None
    salutation: Text = None
    firstname: Text = None
    lastname: Text = None
    email: Text = None
    phone_number: Text = None
    phone_area_code: Text = None
    phone_country_code: Text = None
    phone_subscriber: Text = None
    cell_phone_number: Text = None
    cell_phone_area_code: Text = None
    cell_phone_country_code: Text = None
    cell_phone_subscriber: Text = None
    address_city: Text = None
    postcode: Text = None
    address_quarter: Text = None
    street: Text = None
    house_number: Text = None
    geo_city: Text = None
    geo_country: Text = None
    geo_region: Text = None
    geo_quarter: Text = None
    apartment_type: Text = None
    assisted_living: Flag = None
    balcony: Flag = None
    base_rent: Decimal | None = None
    built_in_kitchen: Flag = None
    calculated_total_rent: Decimal | None = None
    calculated_total_rent_scope: Text = None
    cellar: Flag = None
    certificate_of_eligibility_needed: Flag = None
    condition: Text = None
    construction_year: int | None = None
    deposit: Text = None
    description_note: Text = None
    floor: int | None = None
    free_from: Text = None
    garden: Flag = None
    guest_toilet: Flag = None
    handicapped_accessible: Flag = None
    heating_costs: Decimal | None = None
    heating_costs_in_service_charge: Flag = None
    heating_type: Text = None
    interior_quality: Text = None
    last_refurbishment: int | None = None
    lift: Flag = None
    living_space: Decimal | None = None
    number_of_floors: int | None = None
    number_of_rooms: Decimal | None = None
    pets_allowed: Text = None
    service_charge: Decimal | None = None
    state: Text = None
    total_rent: Decimal | None = None
    geo_quarter_code: Text = None
    bedrooms: Decimal | None = None
    bathrooms: Decimal | None = None
    parking_space_price: Decimal | None = None
    number_of_parking_spaces: int | None = None
    parking_space_type: Text = None
    latitude: Decimal | None = None
    longitude: Decimal | None = None
    # Any JSON shape: only whether they are there (and, for attachments, hold a picture) matters
    title_picture_id: msgspec.Raw = None
    attachments: msgspec.Raw = None
    listing_type: Text = None
    title: Text = None
    energy_efficiency_class: Text = None
    thermal_characteristic: Decimal | None = None
    # a list of objects ([{"firingType": "GAS"}]) or one value: made readable text by listing.readable_list
    firing_types: msgspec.Raw = None
    energy_sources: msgspec.Raw = None
    heating_type_enev2014: Text = None
    usable_floor_space: Decimal | None = None
    use_as_flatshare_room: Flag = None
    has_courtage: Flag = None
    furnishing_note: Text = None
    location_note: Text = None
    other_note: Text = None


# Typed fields (numbers, timestamps) where a sentinel can stand for "missing": a line the fast path refuses
# is decoded again with these as Raw, and each is typed on its own (decode._typed), so `NO_INFORMATION`
# or `""` in a number becomes NULL instead of rejecting the listing, and anything else names its field.
TYPED_FIELDS = {
    f.name: f.type
    for f in msgspec.structs.fields(Listing)
    if f.name != "id" and f.type not in (Text, Flag, msgspec.Raw)
}
# Every key of `data` the model declares, read or ignored; any other is an unknown key, counted.
KNOWN_SOURCE_KEYS = frozenset(FIELD_SOURCE_KEYS.values()) | frozenset(IGNORED_SOURCE_KEYS)


def flag(value: Flag, field: str) -> bool | None:
    """ "true"/"false" and YES/NO are booleans; NOT_APPLICABLE, NO_INFORMATION and blanks are unknown."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    if value in SENTINELS or not value.strip():
        return None
    raise RejectedLine("invalid_value", f"`{FIELD_SOURCE_KEYS[field]}` {value[:40]!r} is not a boolean")
