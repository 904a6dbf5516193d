-- BI reads the views of its own schema and nothing of the warehouse schema: a grant on it given by
-- hand (to the role or to PUBLIC, which every role is a member of) is taken back on every run.
REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;
REVOKE ALL ON SCHEMA {schema} FROM {bi_role};
REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {bi_role};
GRANT USAGE ON SCHEMA {bi_schema} TO {bi_role};
GRANT SELECT ON ALL TABLES IN SCHEMA {bi_schema} TO {bi_role};
ALTER DEFAULT PRIVILEGES IN SCHEMA {bi_schema} GRANT SELECT ON TABLES TO {bi_role};
