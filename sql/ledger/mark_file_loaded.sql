UPDATE {schema}.load_ledger SET
    status = 'loaded', error = NULL, finished_at = :finished_at, flow_run_id = :flow_run_id,
    size_bytes = :size_bytes, last_modified = :last_modified, version_id = :version_id,
    batch_hour = :batch_hour, batch_hour_source = :batch_hour_source, staged_prefix = :staged_prefix,
    records_read = :records_read, listings = :listings, rejected_count = :rejected_count,
    flagged_count = :flagged_count, unknown_field_count = :unknown_field_count,
    fact_inserted = :fact_inserted, fact_updated = :fact_updated, fact_stale = :fact_stale,
    snapshots_written = :snapshots_written, dim_city_inserted = :dim_city_inserted,
    dim_address_inserted = :dim_address_inserted, dim_agency_inserted = :dim_agency_inserted,
    dim_agency_updated = :dim_agency_updated
WHERE bucket = :bucket AND key = :key AND etag = :etag;

-- A new version of the same key is a correction: its older versions no longer stand (a newer one
-- would have refused this load, see select_newer_loaded_version.sql).
UPDATE {schema}.load_ledger SET status = 'superseded'
WHERE bucket = :bucket AND key = :key AND etag <> :etag AND status = 'loaded';
