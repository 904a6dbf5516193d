-- Each file's rejected lines, with its own file's lineage: reloading or correcting a key replaces its rows.
DELETE FROM {schema}.rejected_records
USING stage_batch_files AS b
WHERE {schema}.rejected_records.source_key = b.key;

INSERT INTO {schema}.rejected_records (
    member, line_number, reason, raw_line, raw_line_bytes, source_key, source_etag, batch_hour,
    source_bucket, source_version_id, flow_run_id, rejected_at
)
SELECT
    s.member, s.line_number, s.reason, s.raw_line, s.raw_line_bytes, b.key, b.etag, b.batch_hour,
    b.bucket, b.version_id, CAST(:flow_run_id AS VARCHAR(64)),
    CAST(:loaded_at AS TIMESTAMP WITH TIME ZONE)
FROM stage_rejected_records AS s
JOIN stage_batch_files AS b ON b.etag = s.source_etag;
