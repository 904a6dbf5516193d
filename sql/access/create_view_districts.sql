-- Rents per district, over each listing's current state. Listings flagged as implausible (quality_flags)
-- are counted but left out of the rents. One ordered aggregate only: Redshift allows several
-- PERCENTILE_CONT in one query only when they all order by the same value.
CREATE VIEW {bi_schema}.districts AS
SELECT
    c.city,
    coalesce(d.district, a.quarter) AS district,
    count(*) AS listings,
    count(CASE WHEN f.is_active THEN 1 END) AS active_listings,
    count(CASE WHEN f.quality_flags IS NULL THEN 1 END) AS plausible_listings,
    round(avg(CASE WHEN f.quality_flags IS NULL THEN f.base_rent END), 2) AS avg_base_rent,
    round(avg(CASE WHEN f.quality_flags IS NULL THEN f.living_space END), 2) AS avg_living_space,
    round(
        sum(CASE WHEN f.quality_flags IS NULL AND f.living_space > 0 THEN f.base_rent END)
        / nullif(sum(CASE WHEN f.quality_flags IS NULL AND f.living_space > 0 AND f.base_rent IS NOT NULL
                          THEN f.living_space END), 0),
        2
    ) AS base_rent_per_sqm,
    CAST(
        percentile_cont(0.5) WITHIN GROUP (
            ORDER BY CASE WHEN f.quality_flags IS NULL AND f.living_space > 0 THEN f.base_rent / f.living_space END
        ) AS NUMERIC(12, 2)
    ) AS median_base_rent_per_sqm
FROM {schema}.fact_flats AS f
LEFT JOIN {schema}.dim_address AS a ON a.address_id = f.address_id
LEFT JOIN {schema}.dim_district AS d ON d.district_id = a.district_id
LEFT JOIN {schema}.dim_city AS c ON c.city_id = a.city_id
GROUP BY c.city, coalesce(d.district, a.quarter);
