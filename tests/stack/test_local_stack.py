"""The local stack is a contract: `make up` settings, real S3 events on SQS, idempotent up, clean down. Here a
stack started in the test's own process; the slow tests are in tests/e2e/test_local_stack.py.

The slow tests drive the CLI exactly as `make up` does, on a stack of their own in a temporary
directory (moto, PostgreSQL, Prefect; no worker or bridge), so the services must outlive the
process that started them. The last two slow tests change that stack: pytest runs them in file order.
"""

from __future__ import annotations

import time
import uuid

import pytest
import sqlalchemy as sa

from berlin_rentals.config import read_env_file
from devstack.local_stack import LocalStack, _pid_alive

# ---- without a stack of their own ---------------------------------------------------------------


@pytest.mark.stack  # starts moto of its own
def test_an_in_process_stack_stops_its_own_children_at_once(tmp_path):
    """The test suite spawns services from the pytest process: stopping them must not wait on an unreaped zombie."""
    stack = LocalStack(tmp_path / "local", services=("s3",))
    env = stack.up()
    pid = stack._running_pid("moto")
    assert pid and env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{env['LOCAL_MOTO_PORT']}"
    assert stack.up() == env == read_env_file(tmp_path / "local" / "env")
    assert stack._running_pid("moto") == pid
    started = time.monotonic()
    stack.down()
    assert time.monotonic() - started < 5
    assert not _pid_alive(pid)
    assert stack.status() == {"moto": False}


def test_an_exported_warehouse_url_is_used_and_no_postgres_is_started(stack_env, tmp_path, monkeypatch):
    schema = f"t_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("WAREHOUSE_URL", stack_env["WAREHOUSE_URL"])
    monkeypatch.setenv("WAREHOUSE_SCHEMA", schema)
    monkeypatch.delenv("WAREHOUSE_BI_SCHEMA", raising=False)  # the session's is the stack's own
    stack = LocalStack(tmp_path / "local", services=("postgres",))
    try:
        env = stack.up()
        assert env["WAREHOUSE_URL"] == stack_env["WAREHOUSE_URL"] and "LOCAL_PG_PORT" not in env
        assert not (tmp_path / "local" / "pgdata").exists() and stack._running_pid("postgres") is None
        engine = sa.create_engine(env["WAREHOUSE_URL"])
        with engine.begin() as conn:
            assert sa.inspect(conn).has_schema(schema)
            # its own BI schema: the stack's berlin_rentals_bi views still read berlin_rentals
            assert env["WAREHOUSE_BI_SCHEMA"] == f"{schema}_bi" and sa.inspect(conn).has_schema(f"{schema}_bi")
            conn.execute(sa.text(f"DROP SCHEMA {schema}_bi CASCADE"))
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
    finally:
        stack.down()
