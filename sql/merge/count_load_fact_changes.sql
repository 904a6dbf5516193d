-- After restate_key_facts.sql: how this load's staged listings relate to the warehouse. New (never
-- held), updated (newer, equally new from this key, or restated: its superseded row was removed), or
-- stale (an older version, kept only as a snapshot). merge/count_fact_changes.sql is the replay's.
SELECT
    COUNT(*) AS staged,
    SUM(CASE WHEN f.listing_id IS NULL AND r.listing_id IS NULL THEN 1 ELSE 0 END) AS inserted,
    SUM(CASE WHEN f.listing_id IS NULL AND r.listing_id IS NOT NULL THEN 1
             WHEN f.listing_id IS NOT NULL
              AND (s.last_modified_at > f.last_modified_at
                   OR (s.last_modified_at = f.last_modified_at AND f.source_key = :source_key))
             THEN 1 ELSE 0 END) AS updated
FROM stage_fact_flats AS s
LEFT JOIN {schema}.fact_flats AS f ON f.listing_id = s.listing_id
LEFT JOIN stage_restated_flats AS r ON r.listing_id = s.listing_id;
