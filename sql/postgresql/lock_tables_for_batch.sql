-- A batch decides which version of each listing is newest before it writes (the staged rows of the whole
-- batch against the warehouse's), and PostgreSQL runs other files' loads at the same time: their writes
-- must not land between that decision and this batch's. This mode waits for every uncommitted load's
-- writes and holds new ones until the batch commits; the dimensions first, in the order a restating load
-- locks them (postgresql/lock_dimensions_for_restatement.sql), then the facts, so no load waits on one
-- that waits on it. Redshift needs none: its loads already serialise on the ledger's LOCK.
LOCK TABLE {schema}.dim_city, {schema}.dim_district, {schema}.dim_address, {schema}.dim_agency, {schema}.dim_agent
    IN SHARE ROW EXCLUSIVE MODE;

LOCK TABLE {schema}.fact_flats IN SHARE ROW EXCLUSIVE MODE;
