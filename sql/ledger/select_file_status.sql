SELECT status, attempts, error
FROM {schema}.load_ledger
WHERE bucket = :bucket AND key = :key AND etag = :etag;
