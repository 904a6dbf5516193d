-- The rejected lines of an object: reloading or correcting it replaces them.
DELETE FROM {schema}.rejected_records WHERE source_key = :source_key;

INSERT INTO {schema}.rejected_records (
    source_key, source_etag, batch_hour, member, line_number, reason, raw_line, raw_line_bytes,
    flow_run_id, rejected_at, source_bucket, source_version_id
)
SELECT
    CAST(:source_key AS VARCHAR(1024)), CAST(:source_etag AS VARCHAR(64)), CAST(:batch_hour AS TIMESTAMP WITH TIME ZONE), member, line_number, reason, raw_line, raw_line_bytes,
    CAST(:flow_run_id AS VARCHAR(64)), CAST(:loaded_at AS TIMESTAMP WITH TIME ZONE), CAST(:source_bucket AS VARCHAR(63)),
    CAST(:source_version_id AS VARCHAR(1024))
FROM stage_rejected_records;
