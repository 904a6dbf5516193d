-- Every version of a listing the warehouse has seen (one per batch it appeared in), oldest first per
-- listing, with the cold rent's change since the version before and the rent per m².
CREATE VIEW {bi_schema}.flat_rent_history AS
SELECT
    s.listing_id,
    s.batch_hour,
    s.last_modified_at AS updated_at,
    s.base_rent,
    s.base_rent - lag(s.base_rent) OVER (
        PARTITION BY s.listing_id ORDER BY s.batch_hour, s.last_modified_at
    ) AS base_rent_change,
    s.total_rent,
    s.service_charge,
    s.heating_costs,
    s.living_space,
    s.number_of_rooms,
    CASE WHEN s.living_space > 0 THEN round(s.base_rent / s.living_space, 2) END AS base_rent_per_sqm,
    s.quality_flags
FROM {schema}.flat_snapshots AS s;
