UPDATE {schema}.load_ledger
SET status = 'loading', flow_run_id = :flow_run_id, started_at = :started_at
WHERE bucket = :bucket AND key = :key AND etag = :etag;
