-- How the staged listings relate to what the warehouse holds: new, newer (to update), or stale
-- (a late batch with an older modification, kept only as a snapshot).
SELECT
    COUNT(*) AS staged,
    SUM(CASE WHEN f.listing_id IS NULL THEN 1 ELSE 0 END) AS inserted,
    SUM(CASE WHEN f.listing_id IS NOT NULL
              AND (s.last_modified_at > f.last_modified_at
                   OR (s.last_modified_at = f.last_modified_at AND f.source_key = :source_key))
             THEN 1 ELSE 0 END) AS updated
FROM stage_fact_flats AS s
LEFT JOIN {schema}.fact_flats AS f ON f.listing_id = s.listing_id;
