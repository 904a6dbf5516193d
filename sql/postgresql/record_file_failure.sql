-- In its own transaction after the load rolled back, once this run's attempt is counted in
-- load_attempts: the ledger row takes that count and the status it leads to (failed, or parked), and the
-- file's counts when this failure has them (the transform ran; else the row keeps the ones it had).
INSERT INTO {schema}.load_ledger AS l (
    bucket, key, etag, status, attempts, flow_run_id, started_at, finished_at, error,
    records_read, rejected_count, rejected_by_reason
)
VALUES (
    :bucket, :key, :etag, :status, :attempts, :flow_run_id, :started_at, :finished_at, :error,
    :records_read, :rejected_count, :rejected_by_reason
)
ON CONFLICT (bucket, key, etag) DO UPDATE
    SET attempts = EXCLUDED.attempts, status = EXCLUDED.status,
        flow_run_id = EXCLUDED.flow_run_id, finished_at = EXCLUDED.finished_at, error = EXCLUDED.error,
        records_read = COALESCE(EXCLUDED.records_read, l.records_read),
        rejected_count = COALESCE(EXCLUDED.rejected_count, l.rejected_count),
        rejected_by_reason = COALESCE(EXCLUDED.rejected_by_reason, l.rejected_by_reason)
    WHERE l.status <> 'loaded'
RETURNING l.status, l.attempts;
