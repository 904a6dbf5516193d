-- A replay changes rows of an object that another transaction may be replacing (a forced reload,
-- or a correction under the same key whose new ledger row is not committed yet). This mode conflicts
-- with every claim (sql/load/claim_files.sql's UPDATE and INSERT take ROW EXCLUSIVE) and with itself, not with reads:
-- replays and loads serialise for the replay's short transaction, as Redshift's LOCK does.
LOCK TABLE {schema}.load_ledger IN SHARE ROW EXCLUSIVE MODE;
