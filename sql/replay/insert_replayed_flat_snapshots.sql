-- Snapshots of the recovered listings only; the object's other snapshots are never touched.
-- flat_snapshots holds one row per listing per object, its newest version in that object: a staged
-- row that is not newer than the object's existing snapshot of the listing is dropped ...
DELETE FROM stage_flat_snapshots
USING {schema}.flat_snapshots AS f
WHERE f.source_key = :source_key
  AND f.listing_id = stage_flat_snapshots.listing_id
  AND f.last_modified_at >= stage_flat_snapshots.last_modified_at;

-- ... an older snapshot of the same listing from this object is replaced ...
DELETE FROM {schema}.flat_snapshots
USING stage_flat_snapshots AS s
WHERE flat_snapshots.source_key = :source_key
  AND flat_snapshots.listing_id = s.listing_id;

-- ... and the rest are inserted. {snapshot_columns} is the model's column list (from code, not input).
INSERT INTO {schema}.flat_snapshots (
    {snapshot_columns}, source_key, source_etag, batch_hour, flow_run_id, loaded_at, source_bucket,
    source_version_id
)
SELECT
    {snapshot_columns}, CAST(:source_key AS VARCHAR(1024)), CAST(:source_etag AS VARCHAR(64)),
    CAST(:batch_hour AS TIMESTAMP WITH TIME ZONE), CAST(:flow_run_id AS VARCHAR(64)),
    CAST(:loaded_at AS TIMESTAMP WITH TIME ZONE), CAST(:source_bucket AS VARCHAR(63)), CAST(:source_version_id AS VARCHAR(1024))
FROM stage_flat_snapshots;
