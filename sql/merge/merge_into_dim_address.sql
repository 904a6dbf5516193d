-- Address rows are keyed by a hash of every address column: a match is the same address.
MERGE INTO {schema}.dim_address
USING stage_dim_address AS s
ON {schema}.dim_address.address_id = s.address_id
WHEN MATCHED THEN UPDATE SET region = s.region
WHEN NOT MATCHED THEN INSERT (address_id, city_id, postcode, quarter, region, street, house_number)
    VALUES (s.address_id, s.city_id, s.postcode, s.quarter, s.region, s.street, s.house_number);
