-- A released version gets its full number of attempts again: the earlier ones no longer count.
UPDATE {schema}.load_attempts SET released_at = :released_at
WHERE bucket = :bucket AND key = :key AND etag = :etag AND released_at IS NULL;
