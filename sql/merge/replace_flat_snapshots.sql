-- A snapshot row per listing per object: reloading or correcting an object replaces its rows.
DELETE FROM {schema}.flat_snapshots WHERE source_key = :source_key;

INSERT INTO {schema}.flat_snapshots (
    listing_id, last_modified_at, base_rent, total_rent, service_charge, heating_costs,
    calculated_total_rent, living_space, number_of_rooms, quality_flags, source_key, source_etag, batch_hour,
    flow_run_id, loaded_at, source_bucket, source_version_id
)
SELECT
    listing_id, last_modified_at, base_rent, total_rent, service_charge, heating_costs,
    calculated_total_rent, living_space, number_of_rooms, quality_flags, CAST(:source_key AS VARCHAR(1024)), CAST(:source_etag AS VARCHAR(64)), CAST(:batch_hour AS TIMESTAMP WITH TIME ZONE),
    CAST(:flow_run_id AS VARCHAR(64)), CAST(:loaded_at AS TIMESTAMP WITH TIME ZONE), CAST(:source_bucket AS VARCHAR(63)),
    CAST(:source_version_id AS VARCHAR(1024))
FROM stage_flat_snapshots;
