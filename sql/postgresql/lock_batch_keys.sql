-- A batch load holds the lock of every key it loads (named as postgresql/lock_object_key.sql names one key's),
-- so a single-file load of one of them waits for the batch, or the batch for it, and the ledger read next
-- sees the other's outcome. Taken in one order (the sorted subquery): two batches that share keys queue
-- instead of deadlocking (were the order lost, PostgreSQL would detect the cycle and the batch would retry).
SELECT pg_advisory_xact_lock(k.lock_hash)
FROM (
    SELECT DISTINCT hashtextextended('berlin-rentals load ' || bucket || '/' || key, 0) AS lock_hash
    FROM stage_batch_files
    ORDER BY 1
) AS k;
