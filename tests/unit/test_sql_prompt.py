"""`make sql` without a stack: where the connection comes from, and what psql is handed.

On a stack with data, `python -m devstack.sql -c ...` and the ready queries are run by
tests/e2e/test_restart.py."""

from __future__ import annotations

import pytest

from devstack import sql
from devstack.local_stack import _format_env, _pg_bin


def test_the_env_files_plain_url_is_used_and_a_password_never_reaches_the_command_line(tmp_path, monkeypatch):
    monkeypatch.delenv("ETL_ENV_FILE", raising=False)
    (tmp_path / "env").write_text(
        _format_env(
            {"WAREHOUSE_PSQL_URL": "postgresql://postgres@127.0.0.1:5999/rentals", "WAREHOUSE_SCHEMA": "berlin_rentals"}
        )
    )
    assert sql.connection(tmp_path) == ("postgresql://postgres@127.0.0.1:5999/rentals", None, "berlin_rentals")

    (tmp_path / "env").write_text(
        _format_env(
            {
                "WAREHOUSE_URL": "redshift+redshift_connector://etl:s3cr3t@cluster.example:5439/dev",
                "WAREHOUSE_SCHEMA": "x",
            }
        )
    )
    url, password, schema = sql.connection(tmp_path)
    assert (url, password, schema) == ("postgresql://etl@cluster.example:5439/dev", "s3cr3t", "x")


def test_as_an_audience_the_prompt_logs_in_as_its_role_in_its_own_schema(tmp_path, monkeypatch):
    monkeypatch.delenv("ETL_ENV_FILE", raising=False)
    (tmp_path / "env").write_text(
        _format_env(
            {
                "WAREHOUSE_PSQL_URL": "postgresql://postgres@127.0.0.1:5999/rentals",
                "WAREHOUSE_BI_URL": "postgresql+psycopg://berlin_rentals_bi:pw-bi@127.0.0.1:5999/rentals",
                "WAREHOUSE_DWH_URL": "postgresql+psycopg://berlin_rentals_dwh:pw-dwh@127.0.0.1:5999/rentals",
                "WAREHOUSE_SCHEMA": "berlin_rentals",
            }
        )
    )
    bi = ("postgresql://berlin_rentals_bi@127.0.0.1:5999/rentals", "pw-bi", "berlin_rentals_bi")
    assert sql.connection(tmp_path, "bi") == bi
    dwh = ("postgresql://berlin_rentals_dwh@127.0.0.1:5999/rentals", "pw-dwh", "berlin_rentals")
    assert sql.connection(tmp_path, "dwh") == dwh
    (tmp_path / "env").write_text(_format_env({"WAREHOUSE_URL": "postgresql+psycopg://postgres@h:1/rentals"}))
    with pytest.raises(SystemExit, match="WAREHOUSE_BI_URL not set"):  # never the superuser instead
        sql.connection(tmp_path, "bi")


def test_without_an_env_file_the_exported_url_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("ETL_ENV_FILE", str(tmp_path / "none" / "env"))
    monkeypatch.delenv("WAREHOUSE_PSQL_URL", raising=False)
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql+psycopg://postgres@127.0.0.1:5998/rentals")
    assert sql.connection()[0] == "postgresql://postgres@127.0.0.1:5998/rentals"
    assert sql.connection(tmp_path / "none")[0] == "postgresql://postgres@127.0.0.1:5998/rentals"
    monkeypatch.delenv("WAREHOUSE_URL")
    with pytest.raises(SystemExit, match="make up"):
        sql.connection()


def test_only_a_plain_schema_name_goes_on_the_search_path():
    assert sql._pg_options("berlin_rentals") == "-c search_path=berlin_rentals,public"
    for bad in ("x y", "a,b", "Rentals", "", None):
        assert sql._pg_options(bad) is None


def test_pgserver_ships_a_psql_and_the_ready_queries_are_listed(capsys):
    assert (_pg_bin() / "psql").exists()
    assert sql.main(["--ready", "list"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("-- ")] == [f"-- {name}" for name in sql.READY]
    assert set(sql.READY) == {"ledger-today", "rejects-by-reason", "rent-history"}
    with pytest.raises(SystemExit):
        sql.main(["--ready", "nope"])


def test_a_shell_that_sourced_a_stacks_env_file_gets_that_stack_not_the_checkouts_stopped_one(tmp_path, monkeypatch):
    # docs/local-stack.md's `source .local/env` then `python -m devstack.sql`: the sourced stack is meant, even
    # where the checkout's own .local/env names another (stopped) stack. The docs' shell test failed on this
    # with "connection refused" on the stopped stack's port.
    stale = tmp_path / "checkout-local"
    stale.mkdir()
    (stale / "env").write_text(_format_env({"WAREHOUSE_URL": "postgresql+psycopg://postgres@127.0.0.1:5111/rentals"}))
    monkeypatch.setattr(sql, "DEFAULT_ROOT", stale)
    monkeypatch.delenv("ETL_ENV_FILE", raising=False)
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql+psycopg://postgres@127.0.0.1:5222/rentals")
    monkeypatch.delenv("WAREHOUSE_PSQL_URL", raising=False)  # the sourced file's plain URL, when it has one
    monkeypatch.setenv("WAREHOUSE_SCHEMA", "berlin_rentals")
    assert sql.connection()[0] == "postgresql://postgres@127.0.0.1:5222/rentals"
    monkeypatch.delenv("WAREHOUSE_URL")
    assert sql.connection()[0] == "postgresql://postgres@127.0.0.1:5111/rentals"  # nothing sourced: the checkout's
