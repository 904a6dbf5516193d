-- A dimension key may come from several files of a batch, and a MERGE takes each source key once (Redshift
-- requires it; PostgreSQL refuses to change a row twice). One row per key stays, the one the batch's files
-- loaded one by one would leave; merge/merge_into_dim_*.sql then merge it as they merge one file's.
-- Each table: the kept rows into a copy, the staging table emptied and refilled (a DELETE with a window
-- function is neither engine's, and Redshift's MERGE takes no subquery as its source).

-- dim_city: a later file's row is what loading it last would leave (the row is keyed by its content).
DROP TABLE IF EXISTS stage_batch_dim_city;

CREATE TEMPORARY TABLE stage_batch_dim_city AS
SELECT s.*
FROM stage_dim_city AS s
JOIN (
    SELECT r.city_id, r.source_etag
    FROM (
        SELECT s.city_id, s.source_etag,
               ROW_NUMBER() OVER (PARTITION BY s.city_id ORDER BY o.load_order DESC) AS pick
        FROM stage_dim_city AS s
        JOIN stage_batch_files AS o ON o.etag = s.source_etag
    ) AS r
    WHERE r.pick = 1
) AS kept ON kept.city_id = s.city_id AND kept.source_etag = s.source_etag;

DELETE FROM stage_dim_city;

INSERT INTO stage_dim_city SELECT * FROM stage_batch_dim_city;

-- dim_district: a row with the geo hierarchy before one without (merge_into_dim_district.sql never lets
-- a missing geo code erase one), then the later file's.
DROP TABLE IF EXISTS stage_batch_dim_district;

CREATE TEMPORARY TABLE stage_batch_dim_district AS
SELECT s.*
FROM stage_dim_district AS s
JOIN (
    SELECT r.district_id, r.source_etag
    FROM (
        SELECT s.district_id, s.source_etag,
               ROW_NUMBER() OVER (PARTITION BY s.district_id ORDER BY CASE WHEN s.geo_code IS NULL THEN 1 ELSE 0 END, o.load_order DESC) AS pick
        FROM stage_dim_district AS s
        JOIN stage_batch_files AS o ON o.etag = s.source_etag
    ) AS r
    WHERE r.pick = 1
) AS kept ON kept.district_id = s.district_id AND kept.source_etag = s.source_etag;

DELETE FROM stage_dim_district;

INSERT INTO stage_dim_district SELECT * FROM stage_batch_dim_district;

-- dim_address: the later file's row, as loading it last would leave.
DROP TABLE IF EXISTS stage_batch_dim_address;

CREATE TEMPORARY TABLE stage_batch_dim_address AS
SELECT s.*
FROM stage_dim_address AS s
JOIN (
    SELECT r.address_id, r.source_etag
    FROM (
        SELECT s.address_id, s.source_etag,
               ROW_NUMBER() OVER (PARTITION BY s.address_id ORDER BY o.load_order DESC) AS pick
        FROM stage_dim_address AS s
        JOIN stage_batch_files AS o ON o.etag = s.source_etag
    ) AS r
    WHERE r.pick = 1
) AS kept ON kept.address_id = s.address_id AND kept.source_etag = s.source_etag;

DELETE FROM stage_dim_address;

INSERT INTO stage_dim_address SELECT * FROM stage_batch_dim_address;

-- dim_agency: the row of the most recently modified listing; of equally recent ones the later file's
-- (merge_into_dim_agency.sql's rule).
DROP TABLE IF EXISTS stage_batch_dim_agency;

CREATE TEMPORARY TABLE stage_batch_dim_agency AS
SELECT s.*
FROM stage_dim_agency AS s
JOIN (
    SELECT r.agency_id, r.source_etag
    FROM (
        SELECT s.agency_id, s.source_etag,
               ROW_NUMBER() OVER (PARTITION BY s.agency_id ORDER BY s.source_modified_at DESC NULLS LAST, o.load_order DESC) AS pick
        FROM stage_dim_agency AS s
        JOIN stage_batch_files AS o ON o.etag = s.source_etag
    ) AS r
    WHERE r.pick = 1
) AS kept ON kept.agency_id = s.agency_id AND kept.source_etag = s.source_etag;

DELETE FROM stage_dim_agency;

INSERT INTO stage_dim_agency SELECT * FROM stage_batch_dim_agency;

-- dim_agent: as for agencies.
DROP TABLE IF EXISTS stage_batch_dim_agent;

CREATE TEMPORARY TABLE stage_batch_dim_agent AS
SELECT s.*
FROM stage_dim_agent AS s
JOIN (
    SELECT r.agent_id, r.source_etag
    FROM (
        SELECT s.agent_id, s.source_etag,
               ROW_NUMBER() OVER (PARTITION BY s.agent_id ORDER BY s.source_modified_at DESC NULLS LAST, o.load_order DESC) AS pick
        FROM stage_dim_agent AS s
        JOIN stage_batch_files AS o ON o.etag = s.source_etag
    ) AS r
    WHERE r.pick = 1
) AS kept ON kept.agent_id = s.agent_id AND kept.source_etag = s.source_etag;

DELETE FROM stage_dim_agent;

INSERT INTO stage_dim_agent SELECT * FROM stage_batch_dim_agent;
