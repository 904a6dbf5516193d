UPDATE {schema}.load_ledger
SET status = :status, attempts = :attempts, flow_run_id = :flow_run_id, finished_at = :finished_at, error = :error
WHERE bucket = :bucket AND key = :key AND etag = :etag;
