-- The replay's recovered rows come from one file: the load's fact merge (load/keep_newest_row_per_listing.sql,
-- load/merge_into_fact_flats.sql) takes each row's lineage from its file's row in stage_batch_files, found
-- by the ETag each staged row carries (a replay's own tables may lack it).
UPDATE stage_fact_flats SET source_etag = CAST(:source_etag AS VARCHAR(64));
