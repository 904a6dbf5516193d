-- District rows are keyed by a hash of (city, district name): a match is the same district. Its geo code
-- and region come from the geo hierarchy, which a listing may lack (then only the address's quarter names
-- the district): such a listing does not erase what another listing told.
MERGE INTO {schema}.dim_district
USING stage_dim_district AS s
ON {schema}.dim_district.district_id = s.district_id
WHEN MATCHED THEN UPDATE SET
    geo_code = COALESCE(s.geo_code, {schema}.dim_district.geo_code),
    region = COALESCE(s.region, {schema}.dim_district.region)
WHEN NOT MATCHED THEN INSERT (district_id, city_id, district, geo_code, region)
    VALUES (s.district_id, s.city_id, s.district, s.geo_code, s.region);
