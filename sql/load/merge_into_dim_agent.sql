-- An agent's contact details and pseudonyms come from the agent's most recently modified listing, as an
-- agency's do (merge_into_dim_agency.sql): staged rows that are not newer are dropped before the MERGE.
DELETE FROM stage_dim_agent
USING {schema}.dim_agent AS d
WHERE d.agent_id = stage_dim_agent.agent_id
  AND d.source_modified_at > stage_dim_agent.source_modified_at;

MERGE INTO {schema}.dim_agent
USING stage_dim_agent AS s
ON {schema}.dim_agent.agent_id = s.agent_id
WHEN MATCHED THEN UPDATE SET
    agency_id = s.agency_id, salutation = s.salutation,
    firstname = s.firstname, lastname = s.lastname, email = s.email,
    phone_number = s.phone_number, phone_area_code = s.phone_area_code,
    phone_country_code = s.phone_country_code, phone_subscriber = s.phone_subscriber,
    cell_phone_number = s.cell_phone_number, cell_phone_area_code = s.cell_phone_area_code,
    cell_phone_country_code = s.cell_phone_country_code, cell_phone_subscriber = s.cell_phone_subscriber,
    agent_name_pseudonym = s.agent_name_pseudonym, email_pseudonym = s.email_pseudonym,
    phone_pseudonym = s.phone_pseudonym, source_modified_at = s.source_modified_at
WHEN NOT MATCHED THEN INSERT (
    agent_id, agency_id, salutation, firstname, lastname, email,
    phone_number, phone_area_code, phone_country_code, phone_subscriber,
    cell_phone_number, cell_phone_area_code, cell_phone_country_code, cell_phone_subscriber,
    agent_name_pseudonym, email_pseudonym, phone_pseudonym, source_modified_at
) VALUES (
    s.agent_id, s.agency_id, s.salutation, s.firstname, s.lastname, s.email,
    s.phone_number, s.phone_area_code, s.phone_country_code, s.phone_subscriber,
    s.cell_phone_number, s.cell_phone_area_code, s.cell_phone_country_code, s.cell_phone_subscriber,
    s.agent_name_pseudonym, s.email_pseudonym, s.phone_pseudonym, s.source_modified_at
);
