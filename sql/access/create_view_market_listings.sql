-- One row per listing for the market report (per district and per band of size, rooms and
-- construction year): `flats` must carry exactly its contract's columns, so construction_year is here.
CREATE VIEW {bi_schema}.market_listings AS
SELECT
    f.listing_id,
    c.city,
    coalesce(d.district, a.quarter) AS district,
    f.living_space,
    f.number_of_rooms,
    f.construction_year,
    f.base_rent,
    CASE WHEN f.living_space > 0 THEN round(f.base_rent / f.living_space, 2) END AS base_rent_per_sqm,
    f.total_rent,
    f.is_active,
    f.last_modified_at AS updated_at,
    f.quality_flags
FROM {schema}.fact_flats AS f
LEFT JOIN {schema}.dim_address AS a ON a.address_id = f.address_id
LEFT JOIN {schema}.dim_district AS d ON d.district_id = a.district_id
LEFT JOIN {schema}.dim_city AS c ON c.city_id = a.city_id;
