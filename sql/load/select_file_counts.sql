SELECT load_order, etag, fact_staged, fact_inserted, fact_updated, dim_city_inserted, dim_address_inserted,
       dim_agency_inserted, dim_agency_updated
FROM stage_batch_counts
ORDER BY load_order;
