-- Count this run's attempt at an object version, before its heavy work: a process the kernel kills
-- (out of memory) mid-transform still leaves it. One row per run: a statement retried after its commit
-- was acknowledged to nobody finds the row and counts nothing twice.
INSERT INTO {schema}.load_attempts (bucket, key, etag, run_id, started_at)
SELECT CAST(:bucket AS VARCHAR(63)), CAST(:key AS VARCHAR(1024)), CAST(:etag AS VARCHAR(64)),
       CAST(:run_id AS VARCHAR(64)), :started_at
WHERE NOT EXISTS (
    SELECT 1 FROM {schema}.load_attempts
    WHERE bucket = :bucket AND key = :key AND etag = :etag AND run_id = :run_id
);
