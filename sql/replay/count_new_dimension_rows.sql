SELECT
    (SELECT COUNT(*) FROM stage_dim_city AS s
      WHERE NOT EXISTS (SELECT 1 FROM {schema}.dim_city AS d WHERE d.city_id = s.city_id)) AS city_inserted,
    (SELECT COUNT(*) FROM stage_dim_address AS s
      WHERE NOT EXISTS (SELECT 1 FROM {schema}.dim_address AS d WHERE d.address_id = s.address_id)) AS address_inserted,
    (SELECT COUNT(*) FROM stage_dim_agency AS s
      WHERE NOT EXISTS (SELECT 1 FROM {schema}.dim_agency AS d WHERE d.agency_id = s.agency_id)) AS agency_inserted;
