"""Prefect's server services, each run once against a real Prefect database: a dependency check.

Why: with SQLAlchemy 2.1.9 in the lock, Prefect 3.8.8's scheduler failed on every loop
(`InvalidRequestError: Can't evaluate bulk DML statement`), so the scheduled `catch-up` never got a
run, and nothing else noticed: the API, the deployments and every flow run started by hand or by an
event still worked. The services run in the background of `prefect server start` and swallow their
own errors (a perpetual service that raises is logged and rescheduled; the scheduler even logs a
deployment it cannot schedule and moves on), so the only way to see such a break is to run them.

What: in a subprocess with a PREFECT_HOME and SQLite database of its own (the server's migrations,
no server, no local stack), this file, run as a script:
  1. writes real content with Prefect's own server models: the catch-up deployment with prefect.yaml's
     cron and parameters (updated an hour ago), a just-updated one on a 10 s interval, the ingest-file
     deployment with its event trigger, a late run, an expired pause, a cancelled run with a running
     task run and a subflow, a run stuck in Cancelling, a worker whose heartbeat stopped, concurrency
     slots held by an expired lease;
  2. calls every perpetual service `prefect server start` registers (prefect.server.services.
     perpetual_services.get_perpetual_services(), telemetry excepted: it posts to Prefect's cloud),
     once each, with its docket dependencies supplied as docket would (a `memory://` docket, the
     database interface, ...), and asserts what each loop of the scheduler inserted; then runs the
     docket tasks they queued (mark a run late, fail a pause, cancel children, revoke a lease, ...)
     with a docket worker, as the server's background worker does, and reads what they changed;
  3. starts the event services the server starts (Service.enabled_services(): event persister,
     reactive triggers, actions, task-run recorder, event stream distributor) on the in-memory
     broker, publishes an `aws.s3.object.created` event as the SQS bridge does and a task run's
     state event as a flow's process does, and waits for what they must cause;
and writes a JSON report the test asserts on. Every ERROR log record of the subprocess is collected:
the services log their failures rather than raise them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROBE_TIMEOUT_SECONDS = 240
# Not run: it posts an anonymous heartbeat to Prefect's servers (the local stack disables it too).
SKIPPED_SERVICES = {"send_telemetry_heartbeat"}
# Must be among the registered services, or the registry moved and this check would pass vacuously.
EXPECTED_SERVICES = {
    "schedule_deployments",
    "schedule_recent_deployments",
    "monitor_late_runs",
    "monitor_expired_pauses",
    "monitor_cancelled_flow_runs",
    "monitor_subflow_runs",
    "ensure_cancelling_timeout_checks",
    "monitor_worker_health",
    "monitor_expired_leases",
    "evaluate_proactive_triggers_periodic",
}
EXPECTED_EVENT_SERVICES = {"EventPersister", "ReactiveTriggers", "Actions", "TaskRunRecorder"}

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"
RAW_BUCKET, RAW_PREFIX = "rentals-raw", "raw/"  # the stack's defaults, as the ingest-file trigger matches them
PROBE_KEY, PROBE_ETAG = f"{RAW_PREFIX}x/probe.zip", "0123456789abcdef0123456789abcdef"


# ---- the test ------------------------------------------------------------------------------------


def _probe_env(tmp_path: Path) -> dict[str, str]:
    # None of the session's Prefect settings (PREFECT_API_URL of the test stack, ...) may leak in.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


# With the stack tier, though it needs no stack: it runs every service of a Prefect server, in a process of its
# own (some 20 s), a check for when a dependency moves rather than for the loop run all day.
@pytest.mark.stack
def test_prefect_server_services_each_run_once_without_error(tmp_path):
    report_file = tmp_path / "report.json"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, __file__, str(report_file)],
        env=_probe_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_SECONDS,
    )
    output = f"\n--- probe stdout ---\n{done.stdout[-4000:]}\n--- probe stderr ---\n{done.stderr[-8000:]}"
    assert done.returncode == 0 and report_file.exists(), f"the probe failed (exit {done.returncode}){output}"
    report = json.loads(report_file.read_text())
    print(
        f"\nprobe: {time.monotonic() - started:.1f} s, SQLAlchemy {report['sqlalchemy']}, Prefect {report['prefect']}"
    )
    for line in report["timeline"]:
        print("  ", line)

    # Every problem at once: a dependency break tends to show in several places.
    problems = [
        *_service_problems(report),
        *_scheduler_problems(report),
        *_docket_problems(report),
        *_effect_problems(report),
        *_event_problems(report),
        *_log_problems(report),
    ]
    tracebacks = "\n\n".join(f"--- {s['name']} ---\n{s['error']}" for s in report["services"] if s["error"])
    assert not problems, "\n".join(problems) + (f"\n\n{tracebacks}" if tracebacks else "") + output


def _service_problems(report: dict) -> list[str]:
    """The perpetual services: each registered, none raised."""
    problems: list[str] = []
    ran = {service["name"]: service for service in report["services"]}
    if not EXPECTED_SERVICES <= set(ran):
        problems.append(f"perpetual services no longer registered: {sorted(EXPECTED_SERVICES - set(ran))}")
    for name, service in ran.items():
        if service["error"]:
            problems.append(f"{name} raised: {service['error'].strip().splitlines()[-1]}")
    return problems


def _scheduler_problems(report: dict) -> list[str]:
    """The scheduler's two loops, each seen inserting runs (the insert is what SQLAlchemy 2.1 broke)."""
    problems: list[str] = []
    inserted = report["scheduled_runs"]
    if inserted["recent"]["after_schedule_recent_deployments"] < 1:
        problems.append(f"schedule_recent_deployments inserted no run for the deployment updated just now: {inserted}")
    if inserted["catch-up"]["after_schedule_recent_deployments"] != 0:
        problems.append(f"the catch-up deployment, updated an hour ago, got runs from the recent loop: {inserted}")
    if inserted["catch-up"]["after_schedule_deployments"] < report["scheduler_min_runs"]:
        problems.append(
            f"schedule_deployments inserted fewer than {report['scheduler_min_runs']} (min_runs) runs "
            f"for the hourly catch-up: {inserted}"
        )
    elif not inserted["catch-up"]["auto_scheduled_by_cron"]:
        problems.append(f"the catch-up's scheduled runs are not its cron's next firings: {inserted}")
    return problems


def _docket_problems(report: dict) -> list[str]:
    """The docket tasks the services queued: some, each completed."""
    problems: list[str] = []
    tasks = report["docket_tasks"]
    if not tasks:
        problems.append("the services queued no docket task, although the database holds work for them")
    for key, task in tasks.items():
        if task["state"] != "completed":
            problems.append(f"docket task {key}: {task['state']} {task['error'] or ''}"[:2000])
    return problems


def _effect_problems(report: dict) -> list[str]:
    """What each service should have done to the database it was given work in."""
    problems: list[str] = []
    expected_effects = {
        "late run": "Late",
        "expired pause": "Failed",
        "task run of the cancelled run": "Cancelled",
        "subflow of the cancelled run": "Cancelled",
        "run stuck cancelling": "Cancelled",
        "worker without heartbeat": "OFFLINE",
        "slots held by the expired lease": "0 active, 0 expired leases left",
    }
    for what, expected in expected_effects.items():
        if report["effects"].get(what) != expected:
            problems.append(f"{what}: {report['effects'].get(what)}, expected {expected}")
    return problems


def _event_problems(report: dict) -> list[str]:
    """The event services: started, alive, the S3 event stored, its trigger run, the task-run state recorded."""
    problems: list[str] = []
    events = report["event_services"]
    if not EXPECTED_EVENT_SERVICES <= set(events["started"]):
        problems.append(f"event services not started: {sorted(EXPECTED_EVENT_SERVICES - set(events['started']))}")
    for name, error in events["crashed"].items():
        problems.append(f"event service {name} died: {error}")
    if not events.get("s3_event_persisted"):
        problems.append("the event persister did not store the S3 event")
    expected_run = {"bucket": RAW_BUCKET, "key": PROBE_KEY, "etag": PROBE_ETAG, "force": False}
    if events.get("triggered_run") != expected_run:
        problems.append(
            f"the ingest-file trigger's run: {events.get('triggered_run')}, expected parameters {expected_run}"
        )
    if events.get("recorded_task_run_state") != "COMPLETED":
        problems.append(f"the task-run recorder recorded {events.get('recorded_task_run_state')}, expected COMPLETED")
    return problems


def _log_problems(report: dict) -> list[str]:
    """No ERROR logged, by a capture shown to see its canaries."""
    problems: list[str] = []
    if not report["log_capture_canaries"]:
        problems.append("the probe's ERROR log capture did not see its canaries: the check below would be blind")
    problems += [f"ERROR logged: {record}"[:3000] for record in report["error_logs"]]
    return problems


# ---- the probe (runs in the subprocess) --------------------------------------------------------


class _ErrorLogs:
    """Every ERROR (or worse) record of any logger, formatted with its traceback."""

    def __init__(self) -> None:
        import logging

        self.records: list[str] = []
        formatter = logging.Formatter("%(name)s: %(message)s")

        def emit(record: logging.LogRecord) -> None:
            if not getattr(record, "_probe_seen", False):  # a record reaches several of these loggers
                record._probe_seen = True
                self.records.append(formatter.format(record))

        handler = logging.Handler(level=logging.ERROR)
        handler.emit = emit  # type: ignore[method-assign]
        # Prefect's logging config stops propagation at some loggers: attach there as well.
        loggers = [logging.getLogger(), logging.getLogger("prefect"), logging.getLogger("docket")]
        loggers += [
            logger
            for logger in logging.root.manager.loggerDict.values()
            if isinstance(logger, logging.Logger) and not logger.propagate
        ]
        for logger in {id(lg): lg for lg in loggers}.values():
            logger.addHandler(handler)


async def _call_with_dependencies(function, docket, stack):
    """Call a docket task function once, supplying each dependency as a docket worker would."""
    import inspect

    from docket import Perpetual, Retry
    from docket.dependencies._contextual import _CurrentDocket
    from docket.dependencies._functional import _Depends

    kwargs = {}
    for name, parameter in inspect.signature(function).parameters.items():
        default = parameter.default
        if isinstance(default, Perpetual):
            kwargs[name] = Perpetual(every=default.every)
        elif isinstance(default, Retry):
            kwargs[name] = default
        elif isinstance(default, _CurrentDocket):
            kwargs[name] = docket
        elif isinstance(default, _Depends):
            value = default.factory()
            if inspect.isawaitable(value):
                value = await value
            if hasattr(value, "__aenter__"):
                value = await stack.enter_async_context(value)
            kwargs[name] = value
        else:
            raise TypeError(
                f"{function.__name__}: no way to supply its parameter {name!r} ({default!r}); "
                f"extend tests/stack/test_prefect_services.py"
            )
    return await function(**kwargs)


async def _probe(report_file: Path) -> None:  # noqa: PLR0915 - one straight story, top to bottom
    import asyncio
    import contextlib
    import logging
    import traceback
    import uuid
    from datetime import timedelta

    import prefect
    import prefect.server.api.server  # noqa: F401 - imports (registers) every service `prefect server start` runs
    import sqlalchemy
    import sqlalchemy as sa
    import yaml
    from docket import Docket, Worker
    from prefect.logging.configuration import setup_logging
    from prefect.server import models, schemas
    from prefect.server.concurrency.lease_storage import ConcurrencyLimitLeaseMetadata, get_concurrency_lease_storage
    from prefect.server.database import provide_database_interface
    from prefect.server.events.actions import RunDeployment
    from prefect.server.events.models.automations import create_automation
    from prefect.server.events.schemas.automations import Automation, EventTrigger, Posture
    from prefect.server.schemas.schedules import CronSchedule, IntervalSchedule
    from prefect.server.schemas.states import StateType
    from prefect.server.services.perpetual_services import get_perpetual_services
    from prefect.settings import get_current_settings
    from prefect.types._datetime import now

    # Prefect configures logging once per process (later calls only adjust it): before the capture.
    setup_logging()
    errors = _ErrorLogs()
    t0 = time.monotonic()
    timeline: list[str] = []

    def mark(what: str) -> None:
        timeline.append(f"{time.monotonic() - t0:6.2f} s  {what}")

    report: dict = {"sqlalchemy": sqlalchemy.__version__, "prefect": prefect.__version__, "timeline": timeline}
    db = provide_database_interface()
    await db.create_db()
    mark("database migrated")

    # ---- 1. content ------------------------------------------------------------------------------
    hour_ago = now("UTC") - timedelta(hours=1)
    catch_up_yaml = next(d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"] if d["name"] == "catch-up")
    (schedule,) = catch_up_yaml["schedules"]
    catch_up_cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    async with db.session_context(begin_transaction=True) as session:
        pool = await models.workers.create_work_pool(
            session=session, work_pool=schemas.actions.WorkPoolCreate(name="local-process", type="process")
        )
        queue_id = pool.default_queue_id
        catch_up_flow = await models.flows.create_flow(session=session, flow=schemas.core.Flow(name="catch-up"))
        ingest_flow = await models.flows.create_flow(session=session, flow=schemas.core.Flow(name="ingest-file"))

        def deployment(name, flow, schedule=None, **extra):
            return models.deployments.create_deployment(
                session=session,
                deployment=schemas.core.Deployment(
                    name=name,
                    flow_id=flow.id,
                    entrypoint="flows/catch_up.py:catch_up",
                    work_pool_name=pool.name,
                    work_queue_id=queue_id,
                    schedules=[schemas.core.DeploymentSchedule(schedule=schedule, active=True)] if schedule else [],
                    **extra,
                ),
            )

        # As prefect.yaml has it; updated an hour ago, so only the main scheduler loop considers it.
        catch_up = await deployment("catch-up", catch_up_flow, catch_up_cron, parameters=catch_up_yaml["parameters"])
        await session.execute(sa.update(db.Deployment).where(db.Deployment.id == catch_up.id).values(updated=hour_ago))
        # Just updated: the "recent deployments" loop (every 5 s) schedules it at once.
        recent = await deployment("recent", catch_up_flow, IntervalSchedule(interval=timedelta(seconds=10)))
        ingest = await deployment("ingest-file", ingest_flow, parameters={"force": False})

        async def flow_run(name, state, **extra):
            return await models.flow_runs.create_flow_run(
                session=session,
                flow_run=schemas.core.FlowRun(name=name, flow_id=catch_up_flow.id, state=state, **extra),
            )

        late = await flow_run(
            "late", schemas.states.Scheduled(scheduled_time=hour_ago), deployment_id=catch_up.id, work_queue_id=queue_id
        )
        paused = await flow_run(
            "paused", schemas.states.Paused(pause_expiration_time=now("UTC") - timedelta(minutes=1))
        )
        cancelled = await flow_run("cancelled", schemas.states.Running())
        child_task = await models.task_runs.create_task_run(
            session=session,
            task_run=schemas.core.TaskRun(
                flow_run_id=cancelled.id,
                task_key="ingest-object",
                dynamic_key="0",
                name="ingest x",
                state=schemas.states.Running(),
            ),
        )
        subflow = await flow_run("subflow", schemas.states.Running(), parent_task_run_id=child_task.id)
        await models.flow_runs.set_flow_run_state(
            session=session, flow_run_id=cancelled.id, state=schemas.states.Cancelled(), force=True
        )
        stuck = await flow_run(
            "stuck cancelling", schemas.states.Running(), deployment_id=catch_up.id, work_queue_id=queue_id
        )
        await models.flow_runs.set_flow_run_state(
            session=session, flow_run_id=stuck.id, force=True, state=schemas.states.Cancelling(timestamp=hour_ago)
        )
        await models.workers.worker_heartbeat(
            session=session, work_pool_id=pool.id, worker_name="gone", heartbeat_interval_seconds=30
        )
        await session.execute(sa.update(db.Worker).where(db.Worker.name == "gone").values(last_heartbeat_time=hour_ago))
        limit = await models.concurrency_limits_v2.create_concurrency_limit(
            session=session, concurrency_limit=schemas.core.ConcurrencyLimitV2(name="probe", limit=2)
        )
        await models.concurrency_limits_v2.bulk_increment_active_slots(
            session=session, concurrency_limit_ids=[limit.id], slots=1
        )
        # A holder that died: its lease (in the server's lease storage, here in memory) expired.
        await get_concurrency_lease_storage().create_lease(
            resource_ids=[limit.id], ttl=timedelta(minutes=-1), metadata=ConcurrencyLimitLeaseMetadata(slots=1)
        )
        # The ingest-file deployment's trigger from prefect.yaml, as `prefect deploy` creates it.
        await create_automation(
            session=session,
            automation=Automation(
                name="ingest-file__automation_1",
                enabled=True,
                trigger=EventTrigger(
                    match={"prefect.resource.id": f"s3://{RAW_BUCKET}/{RAW_PREFIX}*"},
                    expect={"aws.s3.object.created"},
                    posture=Posture.Reactive,
                    threshold=1,
                    within=timedelta(0),
                ),
                actions=[
                    RunDeployment(
                        source="selected",
                        deployment_id=ingest.id,
                        parameters={
                            "bucket": "{{ event.payload.bucket }}",
                            "key": "{{ event.payload.key }}",
                            "etag": "{{ event.payload.etag }}",
                        },
                    )
                ],
            ),
        )
    mark("content written")

    async def scheduled_runs(deployment_id) -> list:
        async with db.session_context() as session:
            rows = await session.execute(
                sa.select(db.FlowRun.expected_start_time).where(
                    db.FlowRun.deployment_id == deployment_id,
                    db.FlowRun.auto_scheduled.is_(True),
                    db.FlowRun.state_type == StateType.SCHEDULED,
                )
            )
            return [r[0] for r in rows]

    async def state_of(table, id_) -> str | None:
        async with db.session_context() as session:
            return (await session.execute(sa.select(table.state_name).where(table.id == id_))).scalar()

    # ---- 2. the perpetual services, once each, then the docket tasks they queued ----------------
    services = [c.function for c in get_perpetual_services() if c.function.__name__ not in SKIPPED_SERVICES]
    # The recent-deployments loop first: then each loop's inserts can be told apart.
    services.sort(key=lambda f: f.__name__ != "schedule_recent_deployments")
    inserted = {"catch-up": {}, "recent": {}}
    report["services"] = []
    async with db.session_context(begin_transaction=True) as session:  # "recent" however slow the set-up was
        await session.execute(sa.update(db.Deployment).where(db.Deployment.id == recent.id).values(updated=now("UTC")))
    async with contextlib.AsyncExitStack() as stack:
        docket = await stack.enter_async_context(
            Docket(name=f"probe-{uuid.uuid4().hex[:8]}", url="memory://", execution_ttl=timedelta(minutes=10))
        )
        docket.register_collection("prefect.server.api.background_workers:task_functions")
        scheduler_started = now("UTC")
        for function in services:
            error = None
            try:
                await _call_with_dependencies(function, docket, stack)
            except Exception:  # noqa: BLE001 - reported, with the others, by the test
                error = traceback.format_exc()
            report["services"].append({"name": function.__name__, "module": function.__module__, "error": error})
            mark(f"{function.__name__}: {'FAILED' if error else 'ok'}")
            if function.__name__ in ("schedule_recent_deployments", "schedule_deployments"):
                for name, dep in (("catch-up", catch_up), ("recent", recent)):
                    inserted[name][f"after_{function.__name__}"] = len(await scheduled_runs(dep.id))

        queued = list((await docket.snapshot()).future)
        # One task at a time: the server's worker runs 10 at once, and on SQLite two of them writing
        # states at the same moment may fail with "database is locked" (the monitors queue them again
        # on their next loop there); that contention is not what this check is about.
        async with Worker(
            docket,
            concurrency=1,
            minimum_check_interval=timedelta(milliseconds=50),
            scheduling_resolution=timedelta(milliseconds=50),
        ) as worker:
            await asyncio.wait_for(worker.run_until_finished(), timeout=60)
        report["docket_tasks"] = {}
        for execution in queued:
            await execution.sync()
            report["docket_tasks"][execution.key] = {"state": execution.state.value, "error": execution.error}
        mark(f"{len(queued)} docket tasks run: {sorted({e.function_name for e in queued})}")

    catch_up_times = sorted(await scheduled_runs(catch_up.id))
    # The cron's next firings from when the scheduler ran, in its time zone: none missing, none doubled.
    inserted["catch-up"]["auto_scheduled_by_cron"] = bool(catch_up_times) and catch_up_times == (
        await catch_up_cron.get_dates(n=len(catch_up_times), start=scheduler_started)
    )
    report["scheduled_runs"] = inserted
    report["scheduler_min_runs"] = get_current_settings().server.services.scheduler.min_runs
    async with db.session_context() as session:
        worker_status = (await session.execute(sa.select(db.Worker.status).where(db.Worker.name == "gone"))).scalar()
    async with db.session_context() as session:
        slots = (
            await session.execute(
                sa.select(db.ConcurrencyLimitV2.active_slots).where(db.ConcurrencyLimitV2.id == limit.id)
            )
        ).scalar()
    leases_left = await get_concurrency_lease_storage().read_expired_lease_ids()
    report["effects"] = {
        "slots held by the expired lease": f"{slots} active, {len(leases_left)} expired leases left",
        "late run": await state_of(db.FlowRun, late.id),
        "expired pause": await state_of(db.FlowRun, paused.id),
        "task run of the cancelled run": await state_of(db.TaskRun, child_task.id),
        "subflow of the cancelled run": await state_of(db.FlowRun, subflow.id),
        "run stuck cancelling": await state_of(db.FlowRun, stuck.id),
        "worker without heartbeat": getattr(worker_status, "value", worker_status),
    }

    # ---- 3. the event services -------------------------------------------------------------------
    report["event_services"] = await _probe_event_services(db, ingest.id, mark)

    # The capture itself, checked at the end (Prefect reconfigures logging when it builds its app).
    canaries = ["prefect.server.services.scheduler", "docket.worker", "sqlalchemy.engine"]
    before = len(errors.records)
    for name in canaries:
        logging.getLogger(name).error("canary: the probe checks it captures ERROR records (not a failure)")
    report["log_capture_canaries"] = len(errors.records) - before == len(canaries)
    report["error_logs"] = errors.records[:before]
    mark("done")
    report_file.write_text(json.dumps(report, indent=2, default=str))


async def _probe_event_services(db, ingest_deployment_id, mark) -> dict:
    import asyncio
    import uuid

    import sqlalchemy as sa
    from prefect.client.schemas.objects import TaskRun
    from prefect.events.schemas.events import Event
    from prefect.server.events import messaging
    from prefect.server.events.schemas.events import Event as ServerEvent
    from prefect.server.services.base import Service
    from prefect.server.utilities.messaging.memory import Topic
    from prefect.states import Completed, Running
    from prefect.utilities import engine

    result: dict = {"started": [], "crashed": {}}
    services = [cls() for cls in Service.enabled_services()]
    tasks = {service: asyncio.create_task(service.start()) for service in services}
    result["started"] = [service.name for service in services]

    async def until(check, timeout: float, what: str):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await check()
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                mark(f"gave up waiting for {what}")
                return value
            await asyncio.sleep(0.2)

    async def subscribed():
        # Each consumer subscribes as it starts, and a message published before would not reach it; one
        # delivered early waits in its subscription (the trigger consumer reads automations first).
        # On "events": the persister, the reactive triggers, the task-run recorder, the stream distributor.
        return (
            len(Topic.by_name("events")._subscriptions) >= 4
            and len(Topic.by_name("actions")._subscriptions) >= 1
            and all(not task.done() for task in tasks.values())
        )

    try:
        await until(subscribed, 30, "the event services to subscribe")
        mark(f"event services started: {result['started']}")

        # What bridge/sqs_bridge.py posts to /api/events for an uploaded object.
        s3_event = Event(
            event="aws.s3.object.created",
            resource={"prefect.resource.id": f"s3://{RAW_BUCKET}/{PROBE_KEY}", "s3.etag": PROBE_ETAG},
            payload={"bucket": RAW_BUCKET, "key": PROBE_KEY, "etag": PROBE_ETAG},
            id=uuid.uuid4(),
        )
        # What a flow's process emits for a task run's state (prefect.utilities.engine, not copied here).
        task_run = TaskRun(id=uuid.uuid4(), name=f"ingest {PROBE_KEY}", task_key="ingest-object", dynamic_key="0")
        engine_emit = engine.emit_event
        engine.emit_event = lambda **kwargs: Event(**{k: v for k, v in kwargs.items() if v is not None})
        try:
            task_event = engine.emit_task_run_state_change_event(task_run, Running(), Completed())
        finally:
            engine.emit_event = engine_emit
        # As POST /api/events does: parse the JSON a client sent, stamp it received, publish it.
        await messaging.publish(
            [ServerEvent.model_validate_json(event.model_dump_json()).receive() for event in (s3_event, task_event)]
        )
        mark("events published")

        async def persisted():
            async with db.session_context() as session:
                return (
                    await session.execute(
                        sa.select(sa.func.count()).select_from(db.Event).where(db.Event.id == s3_event.id)
                    )
                ).scalar()

        async def triggered_run():
            async with db.session_context() as session:
                return (
                    await session.execute(
                        sa.select(db.FlowRun.parameters).where(db.FlowRun.deployment_id == ingest_deployment_id)
                    )
                ).scalar()

        async def recorded_task_run():
            async with db.session_context() as session:
                return (
                    await session.execute(sa.select(db.TaskRun.state_type).where(db.TaskRun.id == task_run.id))
                ).scalar()

        result["s3_event_persisted"] = bool(await until(persisted, 30, "the event to be persisted"))
        result["triggered_run"] = await until(triggered_run, 30, "the triggered ingest-file run")
        state = await until(recorded_task_run, 30, "the task run to be recorded")
        result["recorded_task_run_state"] = getattr(state, "value", state)
        mark("event effects seen")
    finally:
        for service, task in tasks.items():
            if task.done() and not task.cancelled() and task.exception() is not None:
                result["crashed"][service.name] = repr(task.exception())
        await asyncio.gather(
            *(service.stop() for service in services if not tasks[service].done()), return_exceptions=True
        )
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        mark("event services stopped")
    return result


if __name__ == "__main__":
    import asyncio

    asyncio.run(_probe(Path(sys.argv[1])))
