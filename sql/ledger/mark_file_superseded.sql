-- A version older than the key's loaded one: nothing of it is loaded, and it is not a failure (no
-- attempt counted, never parked). The reason says which version stands.
UPDATE {schema}.load_ledger
SET status = 'superseded', flow_run_id = :flow_run_id, finished_at = :finished_at, error = :reason
WHERE bucket = :bucket AND key = :key AND etag = :etag;
