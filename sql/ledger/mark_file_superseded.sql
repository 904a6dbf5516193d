-- A version older than the key's loaded one (or than another version of the key in the same load): nothing
-- of it is loaded, and it is not a failure (no attempt counted, never parked). Read under the load's lock of
-- the key; a version the ledger has no row of yet gets one. The reason says which version stands.
INSERT INTO {schema}.load_ledger (bucket, key, etag, status, attempts, flow_run_id, started_at)
SELECT CAST(:bucket AS VARCHAR(63)), CAST(:key AS VARCHAR(1024)), CAST(:etag AS VARCHAR(64)), 'superseded', 0,
       CAST(:flow_run_id AS VARCHAR(64)), :started_at
WHERE NOT EXISTS (
    SELECT 1 FROM {schema}.load_ledger WHERE bucket = :bucket AND key = :key AND etag = :etag
);

UPDATE {schema}.load_ledger
SET status = 'superseded', flow_run_id = :flow_run_id, finished_at = :finished_at, error = :reason,
    last_modified = :last_modified, version_id = :version_id
WHERE bucket = :bucket AND key = :key AND etag = :etag;
