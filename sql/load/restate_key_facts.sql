-- Before the fact merge of a load that restates keys (rows in stage_restated_flats): those facts (the
-- superseded versions') are rebuilt from the newest snapshot of each listing in a file of another key, and
-- removed where no such file has the listing. The snapshots of the load's own keys are left out: they are
-- the versions being replaced, and the load's staged rows bring what stands of those keys. This version's own rows then merge as usual: newest wins.
-- A snapshot holds the rents, space, rooms, flags and lineage; a rebuilt row keeps the listing's other
-- attributes (address, agency, descriptions) as they were, and has no source line.
UPDATE {schema}.fact_flats SET
    last_modified_at = n.last_modified_at, base_rent = n.base_rent, total_rent = n.total_rent,
    service_charge = n.service_charge, heating_costs = n.heating_costs,
    calculated_total_rent = n.calculated_total_rent, living_space = n.living_space,
    number_of_rooms = n.number_of_rooms, quality_flags = n.quality_flags,
    source_key = n.source_key, source_etag = n.source_etag, batch_hour = n.batch_hour,
    source_bucket = n.source_bucket, source_version_id = n.source_version_id,
    source_member = NULL, source_line = NULL, flow_run_id = n.flow_run_id, loaded_at = n.loaded_at
FROM (
    SELECT p.listing_id, p.last_modified_at, p.base_rent, p.total_rent, p.service_charge, p.heating_costs,
           p.calculated_total_rent, p.living_space, p.number_of_rooms, p.quality_flags, p.source_key,
           p.source_etag, p.batch_hour, p.flow_run_id, p.loaded_at, p.source_bucket, p.source_version_id,
           ROW_NUMBER() OVER (
               PARTITION BY p.listing_id ORDER BY p.last_modified_at DESC, p.batch_hour DESC, p.source_key DESC
           ) AS rank_in_listing
    FROM {schema}.flat_snapshots AS p
    JOIN stage_restated_flats AS r ON r.listing_id = p.listing_id
    WHERE NOT EXISTS (SELECT 1 FROM stage_batch_files AS b WHERE b.key = p.source_key)
) AS n
WHERE n.rank_in_listing = 1
  AND fact_flats.listing_id = n.listing_id
  AND fact_flats.source_key IN (SELECT b.key FROM stage_batch_files AS b);

DELETE FROM {schema}.fact_flats
WHERE source_key IN (SELECT b.key FROM stage_batch_files AS b)
  AND listing_id IN (SELECT listing_id FROM stage_restated_flats);
