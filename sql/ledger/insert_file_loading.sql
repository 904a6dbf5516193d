INSERT INTO {schema}.load_ledger (bucket, key, etag, status, attempts, flow_run_id, started_at)
VALUES (:bucket, :key, :etag, 'loading', 0, :flow_run_id, :started_at);
