-- One row per listing with exactly the required dimensions (issue #13's column contract). The agent's
-- name, e-mail and phone come only from dim_agent's *_pseudonym columns: a keyed HMAC the pipeline
-- computed with a salt the database never holds, or NULL; never a raw value, not even in part.
-- agency_name: a company's name only when it carries a registered legal form: a registered firm must
-- publish that name in every ad's imprint, while a name without one may be a private landlord's own
-- (the DWH role still sees every company in dim_agency). A form counts as written, not as any token of
-- its letters: the unmistakable ones (GmbH, mbH, KGaA, GbR, OHG, PartG, ...Aktiengesellschaft) anywhere
-- as a word, any case; e.K./e.Kfm./e.Kfr. with their dots; the short ones (AG, SE, KG, UG, eG, Ltd, Inc,
-- plc) only in their own case at the end of the name, as a firm's name carries them ("... GmbH & Co.
-- KG", "... UG (haftungsbeschränkt)"). So "Anna Ek", "Se-Jin Park", "Inge Eg", "Familie Kg Müller" stay
-- private; a firm written otherwise is hidden, the safe way round (tests/stack/test_bi_views.py).
-- The view runs with its owner's rights: BI needs no right on the warehouse schema to read it.
CREATE VIEW {bi_schema}.flats AS
SELECT
    f.listing_id,
    f.living_space,
    f.number_of_rooms,
    f.number_of_bedrooms AS bedrooms,
    f.number_of_bathrooms AS bathrooms,
    f.guest_toilet,
    f.base_rent,
    f.total_rent,
    f.service_charge,
    f.heating_costs,
    f.parking_space_price,
    c.city,
    -- an address loaded before dim_district existed has no district_id until its file is loaded again
    coalesce(d.district, a.quarter) AS district,
    a.street,
    a.house_number,
    f.latitude,
    f.longitude,
    CASE
        WHEN regexp_instr(lower(ag.company), '(^|[^a-z])(g?gmbh|mbh|kgaa|gbr|ohg|partg|partgmbb|llc)([^a-z]|$)') > 0
          OR regexp_instr(lower(ag.company), '(aktien|kommandit)gesellschaft') > 0
          OR regexp_instr(ag.company, '(^| )e[.](K|Kfm|Kfr)[.]([ ,]|$)') > 0
          OR regexp_instr(ag.company, ' (AG|SE|KG|UG|eG|Ltd[.]?|Inc[.]?|plc) *([(]haftungsbeschränkt[)])?$') > 0
        THEN ag.company
    END AS agency_name,
    g.agent_name_pseudonym AS agent_name,
    g.email_pseudonym AS agent_email,
    g.phone_pseudonym AS agent_phone,
    f.is_active,
    f.created_at,
    f.last_modified_at AS updated_at,
    f.has_pictures
FROM {schema}.fact_flats AS f
LEFT JOIN {schema}.dim_address AS a ON a.address_id = f.address_id
LEFT JOIN {schema}.dim_district AS d ON d.district_id = a.district_id
LEFT JOIN {schema}.dim_city AS c ON c.city_id = a.city_id
LEFT JOIN {schema}.dim_agency AS ag ON ag.agency_id = f.agency_id
LEFT JOIN {schema}.dim_agent AS g ON g.agent_id = f.agent_id;
