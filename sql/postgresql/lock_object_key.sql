-- Loads of versions of one key serialise on a lock named after the key, held until the load's
-- transaction ends: which version is newest, and which one the warehouse holds, is then decided by one
-- load at a time (a late retry of an old version sees its correction committed). Loads of other keys
-- are not held up; a hash collision only serialises two unrelated keys.
SELECT pg_advisory_xact_lock(hashtextextended(:lock_key, 0));
