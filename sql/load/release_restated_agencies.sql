-- Before the dimension merges of a load that restates its key: an agency (or agent) whose contact details
-- came from a superseded listing version (its source_modified_at is that version's modification) no longer
-- outranks anything, so this version's row for it replaces them whatever its modification.
-- restate_key_dimensions.sql gives it back a modification if this version does not.
UPDATE {schema}.dim_agency
SET source_modified_at = NULL
FROM stage_restated_flats AS r
WHERE r.agency_id = dim_agency.agency_id
  AND r.last_modified_at = dim_agency.source_modified_at;

UPDATE {schema}.dim_agent
SET source_modified_at = NULL
FROM stage_restated_flats AS r
WHERE r.agent_id = dim_agent.agent_id
  AND r.last_modified_at = dim_agent.source_modified_at;
