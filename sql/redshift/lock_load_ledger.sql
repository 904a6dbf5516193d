-- Redshift has no ON CONFLICT and enforces no primary key: serialise ledger claims with a lock
-- held until the load's transaction ends.
LOCK {schema}.load_ledger;
