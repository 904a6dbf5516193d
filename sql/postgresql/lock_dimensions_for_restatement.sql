-- A load that restates its key removes dimension rows no fact points at any more. A concurrent load of
-- another file may have merged such a row and not yet committed the fact pointing at it: this mode
-- waits for every uncommitted dimension merge and holds new ones (and other restating loads) until this
-- transaction ends. Taken before this load writes any dimension or fact, so it waits on nothing that
-- waits on it. Redshift needs none: its loads already serialise on the ledger's LOCK.
LOCK TABLE {schema}.dim_city, {schema}.dim_district, {schema}.dim_address, {schema}.dim_agency, {schema}.dim_agent
    IN SHARE ROW EXCLUSIVE MODE;
