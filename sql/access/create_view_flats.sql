-- One row per listing with exactly the required dimensions (issue #13's column contract). The agent's
-- name, e-mail and phone come only from dim_agent's *_pseudonym columns: a keyed HMAC the pipeline
-- computed with a salt the database never holds, or NULL; never a raw value, not even in part.
-- agency_name: a company's name only when it carries a registered legal form (GmbH, AG, e.K., ...):
-- a registered firm must publish that name in every ad's imprint, while a name without one may be a
-- private landlord's own (the DWH role still sees every company in dim_agency).
-- The view runs with its owner's rights: BI needs no right on the warehouse schema to read it.
CREATE VIEW {bi_schema}.flats AS
SELECT
    f.listing_id,
    f.living_space,
    f.number_of_rooms,
    CAST(NULL AS NUMERIC(6, 2)) AS bedrooms,  -- contract: fact_flats.number_of_bedrooms (model helper)
    CAST(NULL AS NUMERIC(6, 2)) AS bathrooms,  -- contract: fact_flats.number_of_bathrooms (model helper)
    f.guest_toilet,
    f.base_rent,
    f.total_rent,
    f.service_charge,
    f.heating_costs,
    CAST(NULL AS NUMERIC(12, 2)) AS parking_space_price,  -- contract: fact_flats.parking_space_price
    c.city,
    a.quarter AS district,  -- contract: dim_district.district through dim_address.district_id
    a.street,
    a.house_number,
    CAST(NULL AS NUMERIC(10, 7)) AS latitude,  -- contract: fact_flats.latitude
    CAST(NULL AS NUMERIC(10, 7)) AS longitude,  -- contract: fact_flats.longitude
    CASE
        WHEN regexp_instr(
            lower(ag.company),
            '(^|[^a-z])(gmbh|mbh|ag|se|kg|kgaa|ohg|ug|eg|e[.]g[.]|e[.]k[.]|ek|e[.]kfm[.]|e[.]kfr[.]|gbr|partg|ltd|plc|inc|llc|bv|b[.]v[.])([^a-z]|$)'
        ) > 0 THEN ag.company
    END AS agency_name,
    CAST(NULL AS VARCHAR(64)) AS agent_name,  -- contract: dim_agent.agent_name_pseudonym via fact_flats.agent_id
    CAST(NULL AS VARCHAR(64)) AS agent_email,  -- contract: dim_agent.email_pseudonym
    CAST(NULL AS VARCHAR(64)) AS agent_phone,  -- contract: dim_agent.phone_pseudonym
    CAST(NULL AS BOOLEAN) AS is_active,  -- contract: fact_flats.is_active
    CAST(NULL AS TIMESTAMPTZ) AS created_at,  -- contract: fact_flats.created_at
    f.last_modified_at AS updated_at,
    CAST(NULL AS BOOLEAN) AS has_pictures  -- contract: fact_flats.has_pictures
FROM {schema}.fact_flats AS f
LEFT JOIN {schema}.dim_address AS a ON a.address_id = f.address_id
LEFT JOIN {schema}.dim_city AS c ON c.city_id = a.city_id
LEFT JOIN {schema}.dim_agency AS ag ON ag.agency_id = f.agency_id;
