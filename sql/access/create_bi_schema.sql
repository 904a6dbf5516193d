-- The BI audience's schema: views only, no tables, no raw contact value.
CREATE SCHEMA IF NOT EXISTS {bi_schema};
