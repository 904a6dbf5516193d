-- Agencies and agents keep the details of their most recently modified listing: merge_into_dim_agency.sql
-- drops the staged rows that are not newer, then MERGEs. Loads of different keys run at once here, so
-- another load could commit newer details between those two statements, and this load's MERGE would put
-- older ones back. The rows this load will merge are locked first (in one order: loads that share
-- agencies queue instead of deadlocking), so the check after it sees every committed change. The table
-- lock is the one the MERGE takes anyway, taken first so that a restating load's table lock
-- (lock_dimensions_for_restatement.sql) is waited for before any row is held. Redshift needs none: its
-- loads serialise on the ledger's LOCK.
LOCK TABLE {schema}.dim_agency, {schema}.dim_agent IN ROW EXCLUSIVE MODE;

SELECT d.agency_id
FROM {schema}.dim_agency AS d
WHERE d.agency_id IN (SELECT s.agency_id FROM stage_dim_agency AS s)
ORDER BY d.agency_id
FOR UPDATE;

SELECT d.agent_id
FROM {schema}.dim_agent AS d
WHERE d.agent_id IN (SELECT s.agent_id FROM stage_dim_agent AS s)
ORDER BY d.agent_id
FOR UPDATE;
