-- Released: 'failed' with no attempt counted, so the next ingest (the catch-up's, or one by hand) tries
-- it again. The error it was parked for stays readable after the mark.
UPDATE {schema}.load_ledger
SET status = 'failed', attempts = 0, finished_at = :released_at, error = SUBSTRING('released: ' || COALESCE(error, '') FROM 1 FOR 4000)
WHERE bucket = :bucket AND key = :key AND etag = :etag AND status = 'parked';
