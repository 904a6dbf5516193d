-- A file of a key with another version loaded is a correction: the older versions no longer stand (a
-- newer one would have refused the file as superseded, berlin_rentals/warehouse/load.py).
UPDATE {schema}.load_ledger SET status = 'superseded'
FROM stage_batch_files AS b
WHERE {schema}.load_ledger.bucket = b.bucket AND {schema}.load_ledger.key = b.key
  AND {schema}.load_ledger.etag <> b.etag AND {schema}.load_ledger.status = 'loaded';

-- Every file of the load 'loaded', with its own figures, in the load's transaction; and the attempt its
-- run counted before the heavy work ended as loaded (berlin_rentals/warehouse/attempts.py).
UPDATE {schema}.load_ledger SET
    status = 'loaded', error = NULL, finished_at = :finished_at, flow_run_id = CAST(:flow_run_id AS VARCHAR(64)),
    size_bytes = b.size_bytes, last_modified = b.last_modified, version_id = b.version_id,
    batch_hour = b.batch_hour, batch_hour_source = b.batch_hour_source, staged_prefix = b.staged_prefix,
    records_read = b.records_read, listings = b.listings, rejected_count = b.rejected_count,
    rejected_by_reason = b.rejected_by_reason,
    flagged_count = b.flagged_count, unknown_field_count = b.unknown_field_count,
    fact_inserted = c.fact_inserted, fact_updated = c.fact_updated,
    fact_stale = c.fact_staged - c.fact_inserted - c.fact_updated,
    snapshots_written = b.snapshots_written, dim_city_inserted = c.dim_city_inserted,
    dim_address_inserted = c.dim_address_inserted, dim_agency_inserted = c.dim_agency_inserted,
    dim_agency_updated = c.dim_agency_updated
FROM stage_batch_files AS b, stage_batch_counts AS c
WHERE c.load_order = b.load_order
  AND {schema}.load_ledger.bucket = b.bucket AND {schema}.load_ledger.key = b.key
  AND {schema}.load_ledger.etag = b.etag;

UPDATE {schema}.load_attempts SET outcome = 'loaded', finished_at = :finished_at, error = NULL
FROM stage_batch_files AS b
WHERE {schema}.load_attempts.bucket = b.bucket AND {schema}.load_attempts.key = b.key
  AND {schema}.load_attempts.etag = b.etag AND {schema}.load_attempts.run_id = b.attempt_id;
