-- Loads of versions of one key serialise on a lock named after the key (:lock_keys, one name per key of the
-- load), held until the load's transaction ends: which version is newest, and which one the warehouse holds,
-- is then decided by one load at a time (a late retry of an old version sees its correction committed), and
-- the ledger read next sees the other load's outcome. Loads of other keys are not held up; a hash collision
-- only serialises two unrelated keys. Taken in one order (sorted): two loads that share keys queue instead
-- of deadlocking (were the order lost, PostgreSQL would detect the cycle and the load would retry).
SELECT pg_advisory_xact_lock(k.lock_hash)
FROM (
    SELECT DISTINCT hashtextextended(n.lock_key, 0) AS lock_hash
    FROM unnest(CAST(:lock_keys AS TEXT[])) AS n (lock_key)
    ORDER BY 1
) AS k;
