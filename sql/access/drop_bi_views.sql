-- Dropped and created again on every create_warehouse (CREATE OR REPLACE cannot change a view's
-- columns on either engine); grants are given again right after, in the same transaction.
DROP VIEW IF EXISTS {bi_schema}.flats;
DROP VIEW IF EXISTS {bi_schema}.flat_rent_history;
DROP VIEW IF EXISTS {bi_schema}.districts;
DROP VIEW IF EXISTS {bi_schema}.market_listings;
