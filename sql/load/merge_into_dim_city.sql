-- City rows are keyed by a hash of (city, country): a match is the same city, nothing to change.
MERGE INTO {schema}.dim_city
USING stage_dim_city AS s
ON {schema}.dim_city.city_id = s.city_id
WHEN MATCHED THEN UPDATE SET city = s.city, country = s.country
WHEN NOT MATCHED THEN INSERT (city_id, city, country) VALUES (s.city_id, s.city, s.country);
