-- The ledger's rows (every version) of some keys of a bucket: to tell loaded and parked versions from the
-- ones still to ingest (a bucket listing), and, read under the load's locks, which files a load takes
-- (last_modified and version_id tell which version of a key is newer). :keys expands to one value per key.
SELECT key, etag, status, attempts, error, last_modified, version_id
FROM {schema}.load_ledger
WHERE bucket = :bucket AND key IN :keys;
