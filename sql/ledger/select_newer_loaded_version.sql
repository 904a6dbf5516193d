-- Read after the claim, under the key's lock: a loaded version of the same key that is newer than this
-- one (by the object's LastModified, a tie broken by version id). This version must not replace it.
-- Versions without a version id that tie on LastModified cannot be told apart: the later load stands.
SELECT etag, last_modified
FROM {schema}.load_ledger
WHERE bucket = :bucket AND key = :key AND etag <> :etag AND status = 'loaded'
  AND (last_modified > :last_modified
       OR (last_modified = :last_modified AND version_id > :version_id))
ORDER BY last_modified DESC;
