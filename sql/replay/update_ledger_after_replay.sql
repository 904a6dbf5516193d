-- The ledger row keeps the load's run and timings; a replay adds what it recovered and sets the
-- rejected count (and its summary by reason) to what is left: the file's count less the lines recovered,
-- which also counts the lines past ETL_MAX_REJECTED_ROWS that kept no row and so were not replayed.
UPDATE {schema}.load_ledger SET
    rejected_count = :rejected_count,
    rejected_by_reason = :rejected_by_reason,
    listings = COALESCE(listings, 0) + :listings_added,
    snapshots_written = COALESCE(snapshots_written, 0) + :listings_added,
    fact_inserted = COALESCE(fact_inserted, 0) + :fact_inserted,
    fact_updated = COALESCE(fact_updated, 0) + :fact_updated,
    flagged_count = COALESCE(flagged_count, 0) + :flagged_added
WHERE bucket = :bucket AND key = :key AND etag = :etag AND status = 'loaded';
