-- In its own transaction after the load rolled back, once this run's attempt is counted in
-- load_attempts: the ledger row takes that count and the status it leads to (failed, or parked).
INSERT INTO {schema}.load_ledger AS l (bucket, key, etag, status, attempts, flow_run_id, started_at, finished_at, error)
VALUES (:bucket, :key, :etag, :status, :attempts, :flow_run_id, :started_at, :finished_at, :error)
ON CONFLICT (bucket, key, etag) DO UPDATE
    SET attempts = EXCLUDED.attempts, status = EXCLUDED.status,
        flow_run_id = EXCLUDED.flow_run_id, finished_at = EXCLUDED.finished_at, error = EXCLUDED.error
    WHERE l.status <> 'loaded'
RETURNING l.status, l.attempts;
