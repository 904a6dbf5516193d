-- Claim one object version for loading, inside the load's transaction. A concurrent claim of the
-- same (bucket, key, etag) waits on the primary key until this transaction ends, then finds the
-- row 'loaded' and returns nothing: the database, not timing, decides who loads.
INSERT INTO {schema}.load_ledger AS l (bucket, key, etag, status, attempts, flow_run_id, started_at)
VALUES (:bucket, :key, :etag, 'loading', 0, :flow_run_id, :started_at)
ON CONFLICT (bucket, key, etag) DO UPDATE
    SET status = 'loading', flow_run_id = EXCLUDED.flow_run_id, started_at = EXCLUDED.started_at
    WHERE l.status NOT IN ('loaded', 'parked') OR :force
RETURNING l.attempts;
