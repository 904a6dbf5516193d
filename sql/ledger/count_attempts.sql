-- The attempts counted against an object version: not released, and not ended by a configuration
-- error (which is not the file's fault). An attempt that never finished counts: its process died.
SELECT COUNT(*) AS attempts,
       COALESCE(SUM(CASE WHEN run_id = :run_id THEN 1 ELSE 0 END), 0) AS this_run
FROM {schema}.load_attempts
WHERE bucket = :bucket AND key = :key AND etag = :etag
  AND released_at IS NULL AND (outcome IS NULL OR outcome <> 'config');
