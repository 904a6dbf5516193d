-- Every ledger row of one object key: which version (if any) is loaded and may be replayed.
SELECT etag, status, rejected_count
FROM {schema}.load_ledger
WHERE bucket = :bucket AND key = :key;
