-- The DWH engineers read the warehouse as it is (raw contacts included) and the BI views beside it.
-- ALL TABLES covers what exists now, the default privileges what a later create_warehouse adds.
GRANT USAGE ON SCHEMA {schema} TO {dwh_role};
GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {dwh_role};
ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {dwh_role};
GRANT USAGE ON SCHEMA {bi_schema} TO {dwh_role};
GRANT SELECT ON ALL TABLES IN SCHEMA {bi_schema} TO {dwh_role};
