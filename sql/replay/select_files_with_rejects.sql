-- Loaded object versions that still have rejected lines (candidates for a replay), oldest hour first.
SELECT bucket, key, etag, batch_hour, rejected_count
FROM {schema}.load_ledger
WHERE status = 'loaded' AND rejected_count > 0 AND batch_hour >= :since
ORDER BY batch_hour, key;
