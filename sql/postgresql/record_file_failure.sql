-- In its own transaction after the load rolled back: count the attempt, park when it is hopeless.
INSERT INTO {schema}.load_ledger AS l (bucket, key, etag, status, attempts, flow_run_id, started_at, finished_at, error)
VALUES (:bucket, :key, :etag, CASE WHEN :terminal OR 1 >= :max_attempts THEN 'parked' ELSE 'failed' END,
        1, :flow_run_id, :started_at, :finished_at, :error)
ON CONFLICT (bucket, key, etag) DO UPDATE
    SET attempts = l.attempts + 1,
        status = CASE WHEN :terminal OR l.attempts + 1 >= :max_attempts THEN 'parked' ELSE 'failed' END,
        flow_run_id = EXCLUDED.flow_run_id, finished_at = EXCLUDED.finished_at, error = EXCLUDED.error
    WHERE l.status <> 'loaded'
RETURNING l.status, l.attempts;
