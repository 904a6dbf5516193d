INSERT INTO {schema}.load_ledger (
    bucket, key, etag, status, attempts, flow_run_id, started_at, finished_at, error,
    records_read, rejected_count, rejected_by_reason
)
VALUES (
    :bucket, :key, :etag, :status, :attempts, :flow_run_id, :started_at, :finished_at, :error,
    :records_read, :rejected_count, :rejected_by_reason
);
