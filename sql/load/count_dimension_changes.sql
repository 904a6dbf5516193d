-- Each file's new dimension rows for its ledger row, before the dimensions are merged: what loading the
-- files one by one, in load_order, would have counted. A new row is counted for the first file that has
-- it; an agency as updated for each later file whose row is not older than the one held then (the
-- warehouse's or an earlier file's). A file of its own is the case of one: its rows against the warehouse.
DROP TABLE IF EXISTS stage_batch_dim_counts;

CREATE TEMPORARY TABLE stage_batch_dim_counts AS
SELECT
    b.load_order,
    b.etag,
    COALESCE(city.inserted, 0) AS dim_city_inserted,
    COALESCE(address.inserted, 0) AS dim_address_inserted,
    COALESCE(agency.inserted, 0) AS dim_agency_inserted,
    COALESCE(agency_updates.updated, 0) AS dim_agency_updated
FROM stage_batch_files AS b
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
