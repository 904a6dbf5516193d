-- Each file's figures for its ledger row, before anything is merged: what loading the batch's files one
-- by one, in load_order, would have counted. A listing is new to the file that brings it first when the
-- warehouse lacks it; updated when the file's version is newer than both the warehouse's and every earlier
-- file's (an equally new one stays: the first to arrive is kept, as one file's load keeps it); else stale.
-- A new dimension row is counted for the first file that has it; an agency as updated for each later file
-- whose row is not older than the one held then (the warehouse's or an earlier file's).
DROP TABLE IF EXISTS stage_batch_counts;

CREATE TEMPORARY TABLE stage_batch_counts AS
SELECT
    b.load_order,
    b.etag,
    COALESCE(f.staged, 0) AS fact_staged,
    COALESCE(f.inserted, 0) AS fact_inserted,
    COALESCE(f.updated, 0) AS fact_updated,
    COALESCE(city.inserted, 0) AS dim_city_inserted,
    COALESCE(address.inserted, 0) AS dim_address_inserted,
    COALESCE(agency.inserted, 0) AS dim_agency_inserted,
    COALESCE(agency_updates.updated, 0) AS dim_agency_updated
FROM stage_batch_files AS b
LEFT JOIN (
    SELECT
        v.source_etag,
        COUNT(*) AS staged,
        SUM(CASE WHEN v.held_at IS NULL AND v.earlier_at IS NULL THEN 1 ELSE 0 END) AS inserted,
        SUM(CASE WHEN (v.held_at IS NOT NULL OR v.earlier_at IS NOT NULL)
                  AND v.last_modified_at > COALESCE(v.held_at, v.earlier_at)
                  AND v.last_modified_at > COALESCE(v.earlier_at, v.held_at)
                 THEN 1 ELSE 0 END) AS updated
    FROM (
        SELECT
            s.source_etag,
            s.last_modified_at,
            w.last_modified_at AS held_at,
            MAX(s.last_modified_at) OVER (
                PARTITION BY s.listing_id ORDER BY o.load_order ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
            ) AS earlier_at
        FROM stage_fact_flats AS s
        JOIN stage_batch_files AS o ON o.etag = s.source_etag
        LEFT JOIN {schema}.fact_flats AS w ON w.listing_id = s.listing_id
    ) AS v
    GROUP BY v.source_etag
) AS f ON f.source_etag = b.etag
LEFT JOIN (
    SELECT n.first_order, COUNT(*) AS inserted
    FROM (
        SELECT s.city_id, MIN(o.load_order) AS first_order
        FROM stage_dim_city AS s
        JOIN stage_batch_files AS o ON o.etag = s.source_etag
        LEFT JOIN {schema}.dim_city AS d ON d.city_id = s.city_id
        WHERE d.city_id IS NULL
        GROUP BY s.city_id
    ) AS n
    GROUP BY n.first_order
) AS city ON city.first_order = b.load_order
LEFT JOIN (
    SELECT n.first_order, COUNT(*) AS inserted
    FROM (
        SELECT s.address_id, MIN(o.load_order) AS first_order
        FROM stage_dim_address AS s
        JOIN stage_batch_files AS o ON o.etag = s.source_etag
        LEFT JOIN {schema}.dim_address AS d ON d.address_id = s.address_id
        WHERE d.address_id IS NULL
        GROUP BY s.address_id
    ) AS n
    GROUP BY n.first_order
) AS address ON address.first_order = b.load_order
LEFT JOIN (
    SELECT n.first_order, COUNT(*) AS inserted
    FROM (
        SELECT s.agency_id, MIN(o.load_order) AS first_order
        FROM stage_dim_agency AS s
        JOIN stage_batch_files AS o ON o.etag = s.source_etag
        LEFT JOIN {schema}.dim_agency AS d ON d.agency_id = s.agency_id
        WHERE d.agency_id IS NULL
        GROUP BY s.agency_id
    ) AS n
    GROUP BY n.first_order
) AS agency ON agency.first_order = b.load_order
LEFT JOIN (
    SELECT v.source_etag, COUNT(*) AS updated
    FROM (
        SELECT
            s.source_etag,
            s.source_modified_at,
            d.agency_id AS held,
            d.source_modified_at AS held_at,
            COUNT(*) OVER (
                PARTITION BY s.agency_id ORDER BY o.load_order ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
            ) AS earlier,
            MAX(s.source_modified_at) OVER (
                PARTITION BY s.agency_id ORDER BY o.load_order ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
            ) AS earlier_at
        FROM stage_dim_agency AS s
        JOIN stage_batch_files AS o ON o.etag = s.source_etag
        LEFT JOIN {schema}.dim_agency AS d ON d.agency_id = s.agency_id
    ) AS v
    WHERE (v.held IS NOT NULL OR v.earlier > 0)
      AND NOT (COALESCE(v.held_at, v.earlier_at) > v.source_modified_at)
      AND NOT (COALESCE(v.earlier_at, v.held_at) > v.source_modified_at)
    GROUP BY v.source_etag
) AS agency_updates ON agency_updates.source_etag = b.etag;
