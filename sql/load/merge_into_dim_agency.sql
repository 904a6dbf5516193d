-- An agency's contact details come from its most recently modified listing: a late batch must
-- not overwrite newer details, so staged rows that are not newer are dropped before the MERGE.
DELETE FROM stage_dim_agency
USING {schema}.dim_agency AS d
WHERE d.agency_id = stage_dim_agency.agency_id
  AND d.source_modified_at > stage_dim_agency.source_modified_at;

MERGE INTO {schema}.dim_agency
USING stage_dim_agency AS s
ON {schema}.dim_agency.agency_id = s.agency_id
WHEN MATCHED THEN UPDATE SET
    customer_id = s.customer_id, company = s.company, salutation = s.salutation,
    firstname = s.firstname, lastname = s.lastname, email = s.email,
    phone_number = s.phone_number, phone_area_code = s.phone_area_code,
    phone_country_code = s.phone_country_code, phone_subscriber = s.phone_subscriber,
    cell_phone_number = s.cell_phone_number, cell_phone_area_code = s.cell_phone_area_code,
    cell_phone_country_code = s.cell_phone_country_code, cell_phone_subscriber = s.cell_phone_subscriber,
    source_modified_at = s.source_modified_at
WHEN NOT MATCHED THEN INSERT (
    agency_id, customer_id, company, salutation, firstname, lastname, email,
    phone_number, phone_area_code, phone_country_code, phone_subscriber,
    cell_phone_number, cell_phone_area_code, cell_phone_country_code, cell_phone_subscriber,
    source_modified_at
) VALUES (
    s.agency_id, s.customer_id, s.company, s.salutation, s.firstname, s.lastname, s.email,
    s.phone_number, s.phone_area_code, s.phone_country_code, s.phone_subscriber,
    s.cell_phone_number, s.cell_phone_area_code, s.cell_phone_country_code, s.cell_phone_subscriber,
    s.source_modified_at
);
