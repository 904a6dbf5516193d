-- After the fact merge of a load that restates its key: dimension rows only the superseded version
-- pointed at are removed once no fact (or, for a district or city, no address) points at them, and an
-- agency or agent released by release_restated_agencies.sql that this version did not restate ranks by its
-- newest remaining listing.
UPDATE {schema}.dim_agency
SET source_modified_at = n.newest
FROM (
    SELECT f.agency_id, MAX(f.last_modified_at) AS newest
    FROM {schema}.fact_flats AS f
    WHERE f.agency_id IN (SELECT agency_id FROM stage_restated_flats)
    GROUP BY f.agency_id
) AS n
WHERE dim_agency.agency_id = n.agency_id
  AND dim_agency.source_modified_at IS NULL;

UPDATE {schema}.dim_agent
SET source_modified_at = n.newest
FROM (
    SELECT f.agent_id, MAX(f.last_modified_at) AS newest
    FROM {schema}.fact_flats AS f
    WHERE f.agent_id IN (SELECT agent_id FROM stage_restated_flats)
    GROUP BY f.agent_id
) AS n
WHERE dim_agent.agent_id = n.agent_id
  AND dim_agent.source_modified_at IS NULL;

DELETE FROM {schema}.dim_agent
WHERE agent_id IN (SELECT agent_id FROM stage_restated_flats)
  AND NOT EXISTS (SELECT 1 FROM {schema}.fact_flats AS f WHERE f.agent_id = dim_agent.agent_id);

DELETE FROM {schema}.dim_agency
WHERE agency_id IN (SELECT agency_id FROM stage_restated_flats)
  AND NOT EXISTS (SELECT 1 FROM {schema}.fact_flats AS f WHERE f.agency_id = dim_agency.agency_id);

DELETE FROM {schema}.dim_address
WHERE address_id IN (SELECT address_id FROM stage_restated_flats)
  AND NOT EXISTS (SELECT 1 FROM {schema}.fact_flats AS f WHERE f.address_id = dim_address.address_id);

DELETE FROM {schema}.dim_district
WHERE district_id IN (SELECT district_id FROM stage_restated_flats)
  AND NOT EXISTS (SELECT 1 FROM {schema}.dim_address AS a WHERE a.district_id = dim_district.district_id);

DELETE FROM {schema}.dim_city
WHERE city_id IN (SELECT city_id FROM stage_restated_flats)
  AND NOT EXISTS (SELECT 1 FROM {schema}.dim_address AS a WHERE a.city_id = dim_city.city_id)
  AND NOT EXISTS (SELECT 1 FROM {schema}.dim_district AS d WHERE d.city_id = dim_city.city_id);
