-- The staging tables were filled by this transaction's COPYs and have no statistics: the planner would take
-- them for a few rows and join them to the warehouse's tables row by row (see keep_newest_row_per_listing.sql).
-- The wide tables only on the columns they are joined on: sampling their texts costs more than the join.
ANALYZE stage_batch_files;

ANALYZE stage_dim_city;

ANALYZE stage_dim_district;

ANALYZE stage_dim_address;

ANALYZE stage_dim_agency;

ANALYZE stage_dim_agent;

ANALYZE stage_fact_flats (listing_id, last_modified_at, source_etag);

ANALYZE stage_flat_snapshots (listing_id, source_etag);

ANALYZE stage_rejected_records (source_etag);
