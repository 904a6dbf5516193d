-- Read after the ledger lock: a replay only ever changes a version that is still 'loaded'.
SELECT status, rejected_count, rejected_by_reason
FROM {schema}.load_ledger
WHERE bucket = :bucket AND key = :key AND etag = :etag;
