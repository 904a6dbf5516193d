-- Address rows are keyed by a hash of every address column: a match is the same address. Its district
-- follows from its quarter; a row loaded before dim_district existed gets it here.
MERGE INTO {schema}.dim_address
USING stage_dim_address AS s
ON {schema}.dim_address.address_id = s.address_id
WHEN MATCHED THEN UPDATE SET region = s.region, district_id = s.district_id
WHEN NOT MATCHED THEN INSERT (address_id, city_id, postcode, quarter, region, street, house_number, district_id)
    VALUES (s.address_id, s.city_id, s.postcode, s.quarter, s.region, s.street, s.house_number, s.district_id);
