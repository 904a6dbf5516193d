-- The facts this load restates: rows whose newest source is the key of one of its files but that the
-- file does not replace itself, i.e. another version's (the one a correction supersedes), or a listing a
-- forced reload no longer yields. Rows of a key that was never loaded do not exist: a load of new files
-- captures nothing. Kept with the dimension rows they pointed at, for the steps that rebuild
-- or remove them (restate_key_facts.sql, restate_key_dimensions.sql). A temporary table lives as long
-- as the session, and a pooled session may still hold the last load's.
DROP TABLE IF EXISTS stage_restated_flats;

CREATE TEMPORARY TABLE stage_restated_flats (
    listing_id BIGINT NOT NULL,
    last_modified_at TIMESTAMP WITH TIME ZONE,
    address_id BIGINT,
    district_id BIGINT,
    city_id BIGINT,
    agency_id BIGINT,
    agent_id BIGINT
);

INSERT INTO stage_restated_flats (listing_id, last_modified_at, address_id, district_id, city_id, agency_id, agent_id)
SELECT f.listing_id, f.last_modified_at, f.address_id, a.district_id, a.city_id, f.agency_id, f.agent_id
FROM {schema}.fact_flats AS f
JOIN stage_batch_files AS b ON b.key = f.source_key
LEFT JOIN {schema}.dim_address AS a ON a.address_id = f.address_id
WHERE f.source_etag <> b.etag
   OR NOT EXISTS (SELECT 1 FROM stage_fact_flats AS s WHERE s.listing_id = f.listing_id AND s.source_etag = b.etag);
