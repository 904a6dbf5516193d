-- The ledger's rows (every version) of the keys a bucket listing found, to tell loaded and parked
-- versions from the ones still to ingest. :keys expands to one bound value per key.
SELECT key, etag, status, attempts, error
FROM {schema}.load_ledger
WHERE bucket = :bucket AND key IN :keys;
