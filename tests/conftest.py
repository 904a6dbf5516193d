from __future__ import annotations

import faulthandler
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from berlin_rentals.config import AlertSettings, AwsSettings, Settings, read_env_file
from berlin_rentals.synthetic import SAMPLE_ZIP

# Tests that use any of these (directly or through another fixture) need the local stack: services
# started, ports open. They are marked `stack`; `make test-fast` runs the rest and starts nothing.
STACK_FIXTURES = {"local_stack", "detached", "stack"}

# A test's folder says its tier, and must agree with what the test needs: the stack-free ones (no stack
# fixture, no `stack` mark, not `slow`) in tests/unit/, those on the local stack but not end to end in
# tests/stack/, the `slow` ones in tests/e2e/. A test elsewhere fails the collection, saying where it belongs.
TESTS = Path(__file__).resolve().parent


def _belongs_in(item) -> tuple[str, str]:
    """The folder the test belongs in, and why."""
    if item.get_closest_marker("slow"):
        return "e2e", "it is marked slow"
    used = sorted(STACK_FIXTURES & set(item.fixturenames))
    if used:
        return "stack", f"it uses {', '.join(used)} (directly or through another fixture) and is not marked slow"
    if item.get_closest_marker("stack"):
        return "stack", "it is marked stack and not slow"
    return "unit", "it uses no stack fixture and is marked neither stack nor slow"


def _misplaced(items) -> list[str]:
    found = {}
    for item in items:
        try:
            parts = Path(item.path).resolve().relative_to(TESTS).parts
        except ValueError:
            continue  # not under tests/
        folder = parts[0] if len(parts) > 1 else ""
        want, why = _belongs_in(item)
        if folder != want:
            where = f"tests/{folder}/" if folder else "tests/ itself"
            name = item.nodeid.split("[")[0]  # a parametrized test once
            found[name] = f"{name} is in {where} but belongs in tests/{want}/: {why}"
    return list(found.values())


def pytest_collection_modifyitems(config, items):
    for item in items:
        if STACK_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.stack)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    """A module (or class) holding a test in the wrong folder fails to collect, as a module that does not
    import does: under pytest-xdist too, and before any fixture has started a service."""
    report = yield
    if report.passed:
        misplaced = _misplaced(node for node in report.result if isinstance(node, pytest.Item))
        if misplaced:
            report.outcome, report.result = "failed", []
            report.longrepr = "a test's folder must say its tier (tests/conftest.py):\n  " + "\n  ".join(misplaced)
    return report


# Once the session has reported, the process must end: a thread or child process still waiting on a
# service the session stopped would hold the interpreter's exit (a CI run of 686 passing tests was
# killed at its time limit 73 minutes after its summary). Past this grace the stacks of every thread and
# the children still alive are printed, for the leak to be found, and the process ends with the
# session's own exit status.
EXIT_GRACE_SECONDS = 120


_EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


def _children() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            if entry.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {command[:200]}")
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    status = config.stash.get(_EXIT_STATUS, None)
    if status is None:
        return

    def end_a_held_exit() -> None:
        time.sleep(EXIT_GRACE_SECONDS)
        sys.stderr.write(
            f"\nconftest: the process has not ended {EXIT_GRACE_SECONDS} s after the session; its threads:\n"
        )
        faulthandler.dump_traceback(sys.stderr, all_threads=True)
        sys.stderr.write("its child processes still alive:\n" + ("\n".join(_children()) or "none") + "\n")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(status)

    threading.Thread(target=end_a_held_exit, name="end-a-held-exit", daemon=True).start()


@pytest.fixture(autouse=True)
def _no_services_in_the_fast_tier(request, monkeypatch):
    """Under `make test-fast` (ETL_TEST_TIER=fast) a test that starts a service without the `stack` mark
    fails, naming itself, instead of quietly making the fast loop slow."""
    if os.environ.get("ETL_TEST_TIER") != "fast":
        return
    from devstack.local_stack import LocalStack

    def refuse(*args, **kwargs):
        pytest.fail(
            f"{request.node.nodeid} starts a service of the local stack: mark it "
            "@pytest.mark.stack (or use a stack fixture) so that `make test-fast` leaves it out"
        )

    monkeypatch.setattr(LocalStack, "up", refuse)


@pytest.fixture(scope="session")
def sample_zip() -> Path:
    if not SAMPLE_ZIP.exists():
        pytest.fail(f"the sample batch is missing: {SAMPLE_ZIP} (shared/ must sit beside the clone)")
    return SAMPLE_ZIP


@pytest.fixture(scope="session")
def local_stack():
    """A real local stack for the session: moto server (S3/SQS), PostgreSQL, Prefect server.

    The alert receiver runs (the alerts' notification block posts to it); the worker and the SQS bridge are not started here: the event-driven tests start them, so that
    elsewhere no background run competes for the queue or the CPU.
    TEST_STACK_ENV_FILE=.local/env reuses a stack started by `make up` (faster when iterating).
    """
    from devstack.local_stack import LocalStack

    reuse = os.environ.get("TEST_STACK_ENV_FILE")
    if reuse:
        stack = LocalStack(Path(reuse).resolve().parent)
        yield stack, read_env_file(reuse)
        return
    # Not under pytest's own temporary directory: as root, PostgreSQL runs as a system user that must reach its
    # data directory, and every pytest session that starts makes /tmp/pytest-of-<user> private again (0700),
    # which killed the PostgreSQL of a session already running beside it ("pg_control: Permission denied").
    root = Path(tempfile.mkdtemp(prefix="berlin-rentals-test-stack-"))
    stack = LocalStack(root, services=("s3", "postgres", "prefect", "receiver"))
    try:
        yield stack, stack.up()
    finally:
        stack.down(save_s3=False)  # a temporary stack: no S3 snapshot to keep
        shutil.rmtree(root, ignore_errors=True)


def _send_pending_prefect_logs_and_events() -> None:
    """Send the run logs and events Prefect still holds while its server is up and its settings still
    apply: later, with the server stopped, the log worker would retry a dead API for over a minute
    before the session could end, and without PREFECT_API_URL it would start a temporary server."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)


@pytest.fixture(scope="session")
def stack_env(local_stack, tmp_path_factory) -> dict[str, str]:
    from prefect.context import refresh_global_settings_context

    _, env = local_stack
    saved = dict(os.environ)
    os.environ.update(env | {"PREFECT_LOCAL_STORAGE_PATH": str(tmp_path_factory.mktemp("prefect-results"))})
    # Prefect read its settings from the environment at import, before the stack's were known. Every
    # thread must see them, not only this one's context: the process-pool task runner forwards its
    # children's events and logs from a thread of its own.
    refresh_global_settings_context()
    try:
        yield env
    finally:
        _send_pending_prefect_logs_and_events()
        os.environ.clear()
        os.environ.update(saved)
        refresh_global_settings_context()


@pytest.fixture
def settings(stack_env, monkeypatch) -> Settings:
    """A fresh warehouse schema per test, so tests never see each other's rows."""
    from berlin_rentals.warehouse.ddl import create_warehouse, make_engine

    schema = f"t_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("WAREHOUSE_SCHEMA", schema)
    monkeypatch.setenv("WAREHOUSE_BI_SCHEMA", f"{schema}_bi")  # never the stack's own BI schema
    settings = Settings.from_env()
    create_warehouse(settings.warehouse_url, schema)
    yield settings
    engine = make_engine(settings.warehouse_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


@pytest.fixture
def warehouse(stack_env) -> Settings:
    """The stack's own schema: runs on the worker load there, not into a test's fresh schema."""
    return Settings.from_env(stack_env)


@pytest.fixture
def s3(stack_env):
    from berlin_rentals.s3 import s3_client

    return s3_client(AwsSettings.from_env())


@pytest.fixture(scope="session")
def deployed_stack(local_stack, stack_env):
    """The stack with the work pool and prefect.yaml's deployments (deployed once a session: 8-10 s).

    The hourly catch-up is paused: at minute 17 (or whenever a worker starts after it, the run being
    late) it would ingest every file the tests uploaded that day into the stack's schema, beside the
    event-driven tests' own runs. tests/e2e/test_schedule.py resumes it for its own test. The missing-hour
    alert is paused too: in a session longer than its 65 minutes it would start such a catch-up itself
    (tests/stack/test_alerts.py makes its own, on a prefix of its own)."""
    from prefect.client.orchestration import get_client

    from deployments.automations import missing_hour_name

    stack, _ = local_stack
    stack.deploy()
    with get_client(sync_client=True) as client:
        client.pause_deployment(client.read_deployment_by_name("catch-up/catch-up").id)
        for automation in client.read_automations_by_name(missing_hour_name(AlertSettings.from_env(stack_env))):
            client.pause_automation(automation.id)
    return stack


@pytest.fixture(scope="module")
def worker(deployed_stack):
    """The stack's process worker without the bridge (no event-driven run races the module's own), started
    once for the module if it is not running, and stopped after if this fixture started it."""
    started = not deployed_stack._running_pid("worker")
    if started:
        deployed_stack.start_service("worker")
    yield deployed_stack
    if started:
        deployed_stack.stop_service("worker")


def _empty_queue(sqs, queue_url: str) -> None:
    """Purge the queue; SQS allows one purge a minute, and on two workers the event-driven modules can
    follow each other faster (PurgeQueueInProgress failed a module's setup): then receive and delete."""
    import botocore.exceptions

    try:
        sqs.purge_queue(QueueUrl=queue_url)
        return
    except botocore.exceptions.ClientError as exc:
        if "PurgeQueueInProgress" not in exc.response.get("Error", {}).get("Code", ""):
            raise
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
        "Messages"
    ):
        entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)]
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)


@pytest.fixture(scope="module")
def event_path(deployed_stack, local_stack, stack_env):
    """prefect.yaml deployed, a worker and the bridge running; those this module started are stopped after.

    The notifications of files other modules uploaded (and loaded in schemas of their own, with no
    bridge running) wait in the queue: they are purged first, or the worker would spend minutes on
    that backlog before reaching this module's files.
    """
    import boto3

    stack, env = local_stack
    if not stack._running_pid("bridge"):
        sqs = boto3.client(
            "sqs", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=AwsSettings.from_env(env).aws_region
        )
        _empty_queue(sqs, sqs.get_queue_url(QueueName=env["ETL_QUEUE_NAME"])["QueueUrl"])
    started = [name for name in ("worker", "bridge") if not stack._running_pid(name)]
    for name in started:
        stack.start_service(name)
    yield stack
    for name in started:
        stack.stop_service(name)


@pytest.fixture
def in_process_aws(monkeypatch):
    """S3 and the rest from moto inside this process (mock_aws, no server: the fast tier), in
    eu-central-1, with dummy keys."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "eu-central-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    from moto import mock_aws

    with mock_aws():
        yield
