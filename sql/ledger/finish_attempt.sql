UPDATE {schema}.load_attempts
SET outcome = :outcome, finished_at = :finished_at, error = :error
WHERE bucket = :bucket AND key = :key AND etag = :etag AND run_id = :run_id;
