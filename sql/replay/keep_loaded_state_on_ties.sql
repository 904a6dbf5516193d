-- A recovered line replaces a listing's state only when it is strictly newer than what the warehouse
-- holds: on an equal modification the row already loaded stays, so a replay never rewrites a good
-- line's row (its flow_run_id and loaded_at stand). Older rows are dropped by merge_into_fact_flats.sql.
DELETE FROM stage_fact_flats
USING {schema}.fact_flats AS f
WHERE f.listing_id = stage_fact_flats.listing_id
  AND f.last_modified_at = stage_fact_flats.last_modified_at;
