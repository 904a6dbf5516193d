-- fact_flats holds each listing's newest state; on PostgreSQL the rule is part of the statement that
-- writes. Loads of different files run at once here, and a check in an earlier statement (the shared
-- load/merge_into_fact_flats.sql deletes stale staged rows first) would read a snapshot older than the
-- row this MERGE finds: under READ COMMITTED the WHEN condition is evaluated again on the newest version
-- of a row that a concurrent load updated, after waiting for it. A staged row replaces the current one
-- only when it is newer, or equally new and from the same object (a correction or a forced reload).
-- The SET and INSERT lists are those of the shared file (tests/unit/test_exactly_once.py keeps them equal).
MERGE INTO {schema}.fact_flats
USING stage_batch_fact_flats AS s
ON {schema}.fact_flats.listing_id = s.listing_id
WHEN MATCHED AND (s.last_modified_at > {schema}.fact_flats.last_modified_at
                   OR (s.last_modified_at = {schema}.fact_flats.last_modified_at
                       AND {schema}.fact_flats.source_key = s.source_key)) THEN UPDATE SET
    address_id = s.address_id, agency_id = s.agency_id, publish_date = s.publish_date,
    apartment_type = s.apartment_type, assisted_living = s.assisted_living, balcony = s.balcony,
    base_rent = s.base_rent, built_in_kitchen = s.built_in_kitchen,
    calculated_total_rent = s.calculated_total_rent,
    calculated_total_rent_scope = s.calculated_total_rent_scope, cellar = s.cellar,
    certificate_of_eligibility_needed = s.certificate_of_eligibility_needed,
    condition = s.condition, construction_year = s.construction_year, deposit = s.deposit,
    description_note = s.description_note, floor = s.floor, free_from = s.free_from,
    garden = s.garden, guest_toilet = s.guest_toilet,
    handicapped_accessible = s.handicapped_accessible, heating_costs = s.heating_costs,
    heating_costs_in_service_charge = s.heating_costs_in_service_charge,
    heating_type = s.heating_type, interior_quality = s.interior_quality,
    last_modified_at = s.last_modified_at, last_refurbishment = s.last_refurbishment,
    lift = s.lift, living_space = s.living_space, number_of_floors = s.number_of_floors,
    number_of_rooms = s.number_of_rooms, pets_allowed = s.pets_allowed,
    service_charge = s.service_charge, state = s.state, total_rent = s.total_rent,
    source_key = s.source_key, source_etag = s.source_etag, batch_hour = s.batch_hour,
    source_bucket = s.source_bucket, source_version_id = s.source_version_id,
    source_member = s.source_member, source_line = s.source_line, quality_flags = s.quality_flags,
    agent_id = s.agent_id, listing_type = s.listing_type, title = s.title,
    number_of_bedrooms = s.number_of_bedrooms, number_of_bathrooms = s.number_of_bathrooms,
    parking_space_price = s.parking_space_price, number_of_parking_spaces = s.number_of_parking_spaces,
    parking_space_type = s.parking_space_type, latitude = s.latitude, longitude = s.longitude,
    created_at = s.created_at, has_pictures = s.has_pictures, is_active = s.is_active,
    energy_efficiency_class = s.energy_efficiency_class, thermal_characteristic = s.thermal_characteristic,
    firing_types = s.firing_types, energy_sources = s.energy_sources,
    heating_type_enev2014 = s.heating_type_enev2014, usable_floor_space = s.usable_floor_space,
    use_as_flatshare_room = s.use_as_flatshare_room, has_courtage = s.has_courtage,
    furnishing_note = s.furnishing_note, location_note = s.location_note, other_note = s.other_note,
    flow_run_id = CAST(:flow_run_id AS VARCHAR(64)), loaded_at = CAST(:loaded_at AS TIMESTAMP WITH TIME ZONE)
WHEN NOT MATCHED THEN INSERT (
    listing_id, address_id, agency_id, publish_date, apartment_type, assisted_living, balcony,
    base_rent, built_in_kitchen, calculated_total_rent, calculated_total_rent_scope, cellar,
    certificate_of_eligibility_needed, condition, construction_year, deposit, description_note,
    floor, free_from, garden, guest_toilet, handicapped_accessible, heating_costs,
    heating_costs_in_service_charge, heating_type, interior_quality, last_modified_at,
    last_refurbishment, lift, living_space, number_of_floors, number_of_rooms, pets_allowed,
    service_charge, state, total_rent, source_key, source_etag, batch_hour, source_member,
    source_line, quality_flags, agent_id, listing_type, title, number_of_bedrooms, number_of_bathrooms,
    parking_space_price, number_of_parking_spaces, parking_space_type, latitude, longitude, created_at,
    has_pictures, is_active, energy_efficiency_class, thermal_characteristic, firing_types, energy_sources,
    heating_type_enev2014, usable_floor_space, use_as_flatshare_room, has_courtage, furnishing_note,
    location_note, other_note, flow_run_id, loaded_at, source_bucket, source_version_id
) VALUES (
    s.listing_id, s.address_id, s.agency_id, s.publish_date, s.apartment_type, s.assisted_living,
    s.balcony, s.base_rent, s.built_in_kitchen, s.calculated_total_rent,
    s.calculated_total_rent_scope, s.cellar, s.certificate_of_eligibility_needed, s.condition,
    s.construction_year, s.deposit, s.description_note, s.floor, s.free_from, s.garden,
    s.guest_toilet, s.handicapped_accessible, s.heating_costs, s.heating_costs_in_service_charge,
    s.heating_type, s.interior_quality, s.last_modified_at, s.last_refurbishment, s.lift,
    s.living_space, s.number_of_floors, s.number_of_rooms, s.pets_allowed, s.service_charge,
    s.state, s.total_rent, s.source_key, s.source_etag, s.batch_hour, s.source_member,
    s.source_line, s.quality_flags, s.agent_id, s.listing_type, s.title, s.number_of_bedrooms,
    s.number_of_bathrooms, s.parking_space_price, s.number_of_parking_spaces, s.parking_space_type,
    s.latitude, s.longitude, s.created_at, s.has_pictures, s.is_active, s.energy_efficiency_class,
    s.thermal_characteristic, s.firing_types, s.energy_sources, s.heating_type_enev2014,
    s.usable_floor_space, s.use_as_flatshare_room, s.has_courtage, s.furnishing_note, s.location_note,
    s.other_note, CAST(:flow_run_id AS VARCHAR(64)), CAST(:loaded_at AS TIMESTAMP WITH TIME ZONE),
    s.source_bucket, s.source_version_id
);
