-- Every object version the ledger knows in one bucket, for comparing with a listing of the raw prefix.
SELECT key, etag, status, attempts, error
FROM {schema}.load_ledger
WHERE bucket = :bucket AND key LIKE :key_prefix;
