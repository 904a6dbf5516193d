-- At the start of a load's transaction on PostgreSQL (every setting ends with the transaction).
-- The session is named after the object version and the run loading it, and the server probes its
-- client: a client that went silent (a partition, a dead host) is dropped within about a minute
-- instead of the OS's two hours, rolling back its transaction and freeing the ledger row it claimed.
SELECT set_config('application_name', :session_name, true),
       set_config('tcp_keepalives_idle', '30', true),
       set_config('tcp_keepalives_interval', '10', true),
       set_config('tcp_keepalives_count', '3', true);

-- A retry of this version's load in the same run: an earlier attempt whose connection failed may
-- live on in the server if no FIN or RST reached it. Its open transaction holds this version's
-- ledger row, and the claim below would wait on it. Our process saw that connection fail: end it.
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE application_name = :session_name AND pid <> pg_backend_pid();
