-- Each file's fact figures for its ledger row, after a restatement (restate_key_facts.sql) and before the
-- facts are merged: what loading the files one by one, in load_order, would have counted. A listing is new
-- to the file that brings it first when the warehouse lacks it and no restatement removed it; updated when
-- the file's version is newer than both the warehouse's and every earlier file's, or as new as the
-- warehouse's row from the file's own key (a forced reload), or the first after its restated row was
-- removed; else stale (kept only as a snapshot). An equally new version in a later file stays stale: the
-- first to arrive is kept, as loading them one by one keeps it. The dimension figures join in.
DROP TABLE IF EXISTS stage_batch_counts;

CREATE TEMPORARY TABLE stage_batch_counts AS
SELECT
    d.load_order,
    d.etag,
    COALESCE(f.staged, 0) AS fact_staged,
    COALESCE(f.inserted, 0) AS fact_inserted,
    COALESCE(f.updated, 0) AS fact_updated,
    d.dim_city_inserted,
    d.dim_address_inserted,
    d.dim_agency_inserted,
    d.dim_agency_updated
FROM stage_batch_dim_counts AS d
LEFT JOIN (
    SELECT
        v.source_etag,
        COUNT(*) AS staged,
        SUM(CASE WHEN v.held_at IS NULL AND v.earlier_at IS NULL AND v.restated IS NULL THEN 1 ELSE 0 END)
            AS inserted,
        SUM(CASE WHEN v.held_at IS NULL AND v.earlier_at IS NULL AND v.restated IS NOT NULL THEN 1
                 WHEN (v.held_at IS NOT NULL OR v.earlier_at IS NOT NULL)
                  AND v.last_modified_at > COALESCE(v.held_at, v.earlier_at)
                  AND v.last_modified_at > COALESCE(v.earlier_at, v.held_at) THEN 1
                 WHEN v.held_at = v.last_modified_at AND v.held_key = v.own_key
                  AND (v.earlier_at IS NULL OR v.last_modified_at > v.earlier_at) THEN 1
                 ELSE 0 END) AS updated
    FROM (
        SELECT
            s.source_etag,
            s.last_modified_at,
            o.key AS own_key,
            w.last_modified_at AS held_at,
            w.source_key AS held_key,
            r.listing_id AS restated,
            MAX(s.last_modified_at) OVER (
                PARTITION BY s.listing_id ORDER BY o.load_order ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
            ) AS earlier_at
        FROM stage_fact_flats AS s
        JOIN stage_batch_files AS o ON o.etag = s.source_etag
        LEFT JOIN {schema}.fact_flats AS w ON w.listing_id = s.listing_id
        LEFT JOIN stage_restated_flats AS r ON r.listing_id = s.listing_id
    ) AS v
    GROUP BY v.source_etag
) AS f ON f.source_etag = d.etag;
