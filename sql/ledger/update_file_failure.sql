-- The counts only when this failure has them (the transform ran): else the row keeps the ones it had.
UPDATE {schema}.load_ledger
SET status = :status, attempts = :attempts, flow_run_id = :flow_run_id, finished_at = :finished_at, error = :error,
    records_read = COALESCE(:records_read, records_read),
    rejected_count = COALESCE(:rejected_count, rejected_count),
    rejected_by_reason = COALESCE(:rejected_by_reason, rejected_by_reason)
WHERE bucket = :bucket AND key = :key AND etag = :etag;
