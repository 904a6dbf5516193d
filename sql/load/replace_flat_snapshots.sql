-- A snapshot row per listing per file, every file's (older versions of a listing included), each row with
-- its own file's lineage. Reloading or correcting a key replaces its rows (those of every version).
DELETE FROM {schema}.flat_snapshots
USING stage_batch_files AS b
WHERE {schema}.flat_snapshots.source_key = b.key;

INSERT INTO {schema}.flat_snapshots (
    listing_id, last_modified_at, base_rent, total_rent, service_charge, heating_costs,
    calculated_total_rent, living_space, number_of_rooms, quality_flags, source_key, source_etag,
    batch_hour, source_bucket, source_version_id, flow_run_id, loaded_at
)
SELECT
    s.listing_id, s.last_modified_at, s.base_rent, s.total_rent, s.service_charge, s.heating_costs,
    s.calculated_total_rent, s.living_space, s.number_of_rooms, s.quality_flags, b.key, b.etag,
    b.batch_hour, b.bucket, b.version_id, CAST(:flow_run_id AS VARCHAR(64)),
    CAST(:loaded_at AS TIMESTAMP WITH TIME ZONE)
FROM stage_flat_snapshots AS s
JOIN stage_batch_files AS b ON b.etag = s.source_etag;
