-- Parked versions of one bucket, parked at or after :since, whose error contains :error_like
-- (a LIKE pattern: '%' for any), oldest first.
SELECT bucket, key, etag, attempts, COALESCE(finished_at, started_at) AS parked_at, error
FROM {schema}.load_ledger
WHERE bucket = :bucket AND status = 'parked'
  AND COALESCE(finished_at, started_at) >= :since
  AND COALESCE(error, '') LIKE :error_like
ORDER BY COALESCE(finished_at, started_at), key, etag;
