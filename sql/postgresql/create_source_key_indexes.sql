-- A load finds the rows of its files' keys (restated facts, the snapshots and rejects it replaces) by
-- source_key. No primary key leads with it: fact_flats' is listing_id, and flat_snapshots' and
-- rejected_records' primary keys list listing_id and member first (a table's column order), so each such
-- lookup read the whole table, once a load, and a table that only grows made every load slower (36 ms
-- at 24,000 facts; seconds at a year's snapshots). Redshift has no indexes: its loads scan by column and
-- batch_hour's sort key, once a batch.
CREATE INDEX IF NOT EXISTS fact_flats_source_key ON {schema}.fact_flats (source_key);

CREATE INDEX IF NOT EXISTS flat_snapshots_source_key ON {schema}.flat_snapshots (source_key);

CREATE INDEX IF NOT EXISTS rejected_records_source_key ON {schema}.rejected_records (source_key);
