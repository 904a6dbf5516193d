-- Claim each file of the load, under the load's locks (no other load of these keys can run, and the ledger
-- read under them left out what is loaded or parked, unless forced): an existing row (failed, superseded,
-- a crashed run's 'loading', or a forced reload's) is taken over, a missing one is written. The whole load
-- commits with its rows 'loaded', or rolls back and leaves every row as it was.
UPDATE {schema}.load_ledger
SET status = 'loading', flow_run_id = CAST(:flow_run_id AS VARCHAR(64)), started_at = :started_at
FROM stage_batch_files AS b
WHERE {schema}.load_ledger.bucket = b.bucket AND {schema}.load_ledger.key = b.key
  AND {schema}.load_ledger.etag = b.etag;

INSERT INTO {schema}.load_ledger (bucket, key, etag, status, attempts, flow_run_id, started_at)
SELECT b.bucket, b.key, b.etag, 'loading', 0, CAST(:flow_run_id AS VARCHAR(64)), :started_at
FROM stage_batch_files AS b
LEFT JOIN {schema}.load_ledger AS l ON l.bucket = b.bucket AND l.key = b.key AND l.etag = b.etag
WHERE l.etag IS NULL;
