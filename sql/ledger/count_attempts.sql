-- The attempts counted against an object version: those that failed, and those that never finished
-- and began before :stale_before (their process died: killed, e.g. for lack of memory); not released
-- ones, nor those ended by a configuration error or a load. A younger unfinished attempt may be a run
-- still at work on the same version: it is not held against the file (this run's own always is).
SELECT COUNT(*) AS attempts,
       COALESCE(SUM(CASE WHEN run_id = :run_id THEN 1 ELSE 0 END), 0) AS this_run,
       COALESCE(SUM(CASE WHEN outcome IS NULL THEN 1 ELSE 0 END), 0) AS unfinished
FROM {schema}.load_attempts
WHERE bucket = :bucket AND key = :key AND etag = :etag AND released_at IS NULL
  AND (outcome = 'failed' OR (outcome IS NULL AND (run_id = :run_id OR started_at < :stale_before)));
