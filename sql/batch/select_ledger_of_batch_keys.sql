-- Every ledger row of the batch's keys, read under the batch's locks: a version another run loaded (or
-- parked) meanwhile drops out of the batch; a key with another version loaded is a correction, which
-- restates its key and so loads on its own (berlin_rentals/warehouse/load.py), not in a batch.
SELECT b.load_order, l.etag, l.status, CASE WHEN l.etag = b.etag THEN 1 ELSE 0 END AS own_version
FROM {schema}.load_ledger AS l
JOIN stage_batch_files AS b ON l.bucket = b.bucket AND l.key = b.key;
