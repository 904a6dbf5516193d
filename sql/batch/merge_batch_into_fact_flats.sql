-- fact_flats holds each listing's newest state; a batch brings many files' versions of a listing at once.
-- First the batch's own newest version of each listing (of equally new ones, the earlier file's: loaded
-- one by one, the first to arrive stays), then the same rule as one file's load against the warehouse
-- (merge/merge_into_fact_flats.sql): a version replaces the held one when newer, or equally new and from
-- the same key. Written as delete-and-insert (Redshift's MERGE takes only a table as its source and wants
-- unique keys; this is what its MERGE does anyway); the batch's locks keep every other load out meanwhile.
DROP TABLE IF EXISTS stage_batch_fact_flats;

CREATE TEMPORARY TABLE stage_batch_fact_flats AS
SELECT s.*
FROM stage_fact_flats AS s
JOIN (
    SELECT r.listing_id, r.source_etag
    FROM (
        SELECT s.listing_id, s.source_etag,
               ROW_NUMBER() OVER (PARTITION BY s.listing_id ORDER BY s.last_modified_at DESC, o.load_order ASC) AS pick
        FROM stage_fact_flats AS s
        JOIN stage_batch_files AS o ON o.etag = s.source_etag
    ) AS r
    WHERE r.pick = 1
) AS newest ON newest.listing_id = s.listing_id AND newest.source_etag = s.source_etag;

-- A table made in this transaction has no statistics yet: without them PostgreSQL joined it to fact_flats
-- row by row (80 s for 12,000 listings against as many held), with them in milliseconds.
ANALYZE stage_batch_fact_flats (listing_id, last_modified_at, source_etag);

DELETE FROM stage_batch_fact_flats
USING {schema}.fact_flats AS f, stage_batch_files AS b
WHERE f.listing_id = stage_batch_fact_flats.listing_id
  AND b.etag = stage_batch_fact_flats.source_etag
  AND (f.last_modified_at > stage_batch_fact_flats.last_modified_at
       OR (f.last_modified_at = stage_batch_fact_flats.last_modified_at AND f.source_key <> b.key));

DELETE FROM {schema}.fact_flats
USING stage_batch_fact_flats AS s
WHERE {schema}.fact_flats.listing_id = s.listing_id;

-- The columns are fact_flats' own (tests/test_batch_load.py checks them against the model).
INSERT INTO {schema}.fact_flats (
    listing_id, address_id, agency_id, publish_date, apartment_type, assisted_living, balcony,
    base_rent, built_in_kitchen, calculated_total_rent, calculated_total_rent_scope, cellar,
    certificate_of_eligibility_needed, condition, construction_year, deposit, description_note, floor,
    free_from, garden, guest_toilet, handicapped_accessible, heating_costs,
    heating_costs_in_service_charge, heating_type, interior_quality, last_modified_at,
    last_refurbishment, lift, living_space, number_of_floors, number_of_rooms, pets_allowed,
    service_charge, state, total_rent, source_member, source_line, quality_flags, agent_id,
    listing_type, title, number_of_bedrooms, number_of_bathrooms, parking_space_price,
    number_of_parking_spaces, parking_space_type, latitude, longitude, created_at, has_pictures,
    is_active, energy_efficiency_class, thermal_characteristic, firing_types, energy_sources,
    heating_type_enev2014, usable_floor_space, use_as_flatshare_room, has_courtage, furnishing_note,
    location_note, other_note, source_key, source_etag, batch_hour, source_bucket, source_version_id,
    flow_run_id, loaded_at
)
SELECT
    s.listing_id, s.address_id, s.agency_id, s.publish_date, s.apartment_type, s.assisted_living,
    s.balcony, s.base_rent, s.built_in_kitchen, s.calculated_total_rent, s.calculated_total_rent_scope,
    s.cellar, s.certificate_of_eligibility_needed, s.condition, s.construction_year, s.deposit,
    s.description_note, s.floor, s.free_from, s.garden, s.guest_toilet, s.handicapped_accessible,
    s.heating_costs, s.heating_costs_in_service_charge, s.heating_type, s.interior_quality,
    s.last_modified_at, s.last_refurbishment, s.lift, s.living_space, s.number_of_floors,
    s.number_of_rooms, s.pets_allowed, s.service_charge, s.state, s.total_rent, s.source_member,
    s.source_line, s.quality_flags, s.agent_id, s.listing_type, s.title, s.number_of_bedrooms,
    s.number_of_bathrooms, s.parking_space_price, s.number_of_parking_spaces, s.parking_space_type,
    s.latitude, s.longitude, s.created_at, s.has_pictures, s.is_active, s.energy_efficiency_class,
    s.thermal_characteristic, s.firing_types, s.energy_sources, s.heating_type_enev2014,
    s.usable_floor_space, s.use_as_flatshare_room, s.has_courtage, s.furnishing_note, s.location_note,
    s.other_note, b.key, b.etag, b.batch_hour, b.bucket, b.version_id,
    CAST(:flow_run_id AS VARCHAR(64)), CAST(:loaded_at AS TIMESTAMP WITH TIME ZONE)
FROM stage_batch_fact_flats AS s
JOIN stage_batch_files AS b ON b.etag = s.source_etag;
