"""The schedule fires, through the real Prefect server, its scheduler and a real process worker.

The scheduled `catch-up` never ran while Prefect 3.8.8's scheduler failed on SQLAlchemy 2.1.9, and no
test noticed: every other test starts its runs itself (a call, `run_deployment`, an event). Here the
runs must come from the server's scheduler service: the catch-up deployment of prefect.yaml gets
upcoming runs on its cron, and a copy of it on a schedule of a few seconds gets a run that the worker
executes to COMPLETED. The server's log must stay free of errors meanwhile (the scheduler's failures
were only ever visible there). tests/stack/test_prefect_services.py checks the same services without a
stack, against each of them once; this is the end-to-end proof.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.schedules import IntervalSchedule
from prefect.client.schemas.sorting import FlowRunSort
from prefect.server.schemas.schedules import CronSchedule
from prefect.settings import get_current_settings

from berlin_rentals.config import Settings
from berlin_rentals.synthetic import batch_name, derived_batch, read_sample_records
from tests.helpers import artifacts_of, query, upload, wait_for

pytestmark = pytest.mark.slow

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"

# The scheduler's "recent deployments" loop runs every 5 s, its main loop every 60 s (Prefect's defaults).
SCHEDULER_WAIT_SECONDS = 30
FAST_INTERVAL = timedelta(seconds=10)
PICKUP_WAIT_SECONDS = 60  # worker start-up (5-8 s when it is not running yet), its 1 s poll, the due time
RUN_WAIT_SECONDS = 120  # a flow-run process on 2 busy cores: 5-8 s to start, the catch-up of one file: ~2 s


class ServerLog:
    """The stack's Prefect server log from a given offset: what the server wrote during one test."""

    PROBLEM = re.compile(r"\|\s*(ERROR|CRITICAL)\s*\||^(ERROR|CRITICAL):|Traceback \(most recent call last\)")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new_lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace").splitlines()

    def assert_clean(self) -> None:
        lines = self.new_lines()
        problems = [line for line in lines if self.PROBLEM.search(line)]
        assert not problems, (
            f"the Prefect server logged {len(problems)} ERROR/Traceback line(s) during the test "
            f"({self.path}):\n" + "\n".join(lines[-150:])
        )


@pytest.fixture
def server_log(deployed_stack):
    log = ServerLog(deployed_stack.log_dir / "prefect.log")
    yield log
    log.assert_clean()


def _runs_of(client, deployment_id, *states: StateType) -> list:
    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(states))))
        if states
        else None,
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        limit=200,
    )


def _yaml_deployment(name: str) -> dict:
    return next(d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"] if d["name"] == name)


def _made_by_its_schedule(run, deployment) -> bool:
    """A run the server's scheduler created for one of the deployment's schedules (not a manual one)."""
    schedule_ids = {schedule.id for schedule in deployment.schedules}
    return bool(
        run.auto_scheduled
        and run.created_by
        and run.created_by.type == "SCHEDULE"
        and run.created_by.id in schedule_ids
    )


@pytest.fixture
def hourly_catch_up(deployed_stack):
    """The catch-up as prefect.yaml deploys it: resumed for this test (the session keeps it paused), and
    paused again after it. No worker runs meanwhile: its next run is minutes away, and none may start."""
    with get_client(sync_client=True) as client:
        deployment_id = client.read_deployment_by_name("catch-up/catch-up").id
        client.resume_deployment(deployment_id)
        try:
            yield
        finally:
            client.pause_deployment(deployment_id)


def test_the_catch_up_deployment_gets_upcoming_runs_from_the_servers_scheduler(
    deployed_stack, hourly_catch_up, server_log
):
    (schedule,) = _yaml_deployment("catch-up")["schedules"]
    min_runs = get_current_settings().server.services.scheduler.min_runs  # the test stack's server: defaults
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("catch-up/catch-up")
        assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in deployment.schedules] == [
            (schedule["cron"], schedule["timezone"], schedule["active"])
        ], deployment.schedules
        started = time.monotonic()

        def upcoming():
            at = datetime.now(UTC)
            runs = [r for r in _runs_of(client, deployment.id, StateType.SCHEDULED) if r.expected_start_time > at]
            return (at, runs) if len(runs) >= min_runs else None

        now, runs = wait_for(
            upcoming,
            SCHEDULER_WAIT_SECONDS,
            f"fewer than {min_runs} (the scheduler's min_runs) upcoming runs of catch-up/catch-up",
        )
    print(
        f"\n{len(runs)} upcoming catch-up runs after {time.monotonic() - started:.1f} s, first at "
        f"{runs[0].expected_start_time.isoformat()}"
    )

    assert all(_made_by_its_schedule(run, deployment) for run in runs), [
        (r.name, r.auto_scheduled, r.created_by) for r in runs
    ]
    # Exactly the cron's next firings from now (in its time zone), none missing, none doubled.
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    expected = asyncio.run(cron.get_dates(n=len(runs), start=now))
    assert [r.expected_start_time for r in runs] == expected, [r.expected_start_time.isoformat() for r in runs]
    assert all(run.parameters == deployment.parameters for run in runs)
    # `make status` tells the same: the schedule's next run, not only that the server answers /health.
    healthy, said = deployed_stack.schedule_status()
    assert healthy and said.startswith(f"catch-up next run {runs[0].expected_start_time:%H:%M} UTC"), said


def test_a_deployment_on_a_few_seconds_schedule_is_run_by_the_worker_to_completion(
    deployed_stack, worker, stack_env, s3, server_log
):
    """A copy of prefect.yaml's catch-up (same flow, entrypoint, pull step, work pool), every 10 s.

    Its parameters keep the run small and independent of the shared bucket: one file of its own, in a
    folder of its own, for a batch hour of its own (the flow lists the prefix over the window). The
    run loads it into the stack's schema, as the hourly catch-up would (or finds it loaded, if a bridge
    of a reused `make up` stack got to it first). Paused as soon as the worker has its first run, and
    deleted after, so it spawns nothing in the rest of the session.
    """
    settings = Settings.from_env(stack_env)
    folder = f"schedule-{uuid.uuid4().hex[:8]}"
    hour = datetime(2032, 1, 1, tzinfo=UTC) + timedelta(hours=uuid.uuid4().int % (360 * 24))
    body = derived_batch(read_sample_records(), hour, rent_factor=1.0, modified=hour, seed=1, new_listings=1)
    key, etag = upload(s3, settings, batch_name(hour) + ".zip", body, folder=folder)

    with get_client(sync_client=True) as client:
        template = client.read_deployment_by_name("catch-up/catch-up")
        created = time.monotonic()
        deployment_id = client.create_deployment(
            flow_id=template.flow_id,
            name=folder,
            entrypoint=template.entrypoint,
            pull_steps=template.pull_steps,
            work_pool_name=template.work_pool_name,
            work_queue_name=template.work_queue_name,
            job_variables=template.job_variables,
            parameter_openapi_schema=template.parameter_openapi_schema,
            enforce_parameter_schema=template.enforce_parameter_schema,
            parameters={
                **template.parameters,
                "prefix": f"{settings.raw_prefix}{folder}/",
                "since": hour.isoformat(),
                "until": (hour + timedelta(hours=1)).isoformat(),
            },
            schedules=[DeploymentScheduleCreate(schedule=IntervalSchedule(interval=FAST_INTERVAL), active=True)],
            description="tests/e2e/test_schedule.py: a catch-up every few seconds; deleted by the test",
        )
        try:
            deployment = client.read_deployment(deployment_id)
            assert (
                deployment.pull_steps
                == template.pull_steps
                == [{"prefect.deployments.steps.set_working_directory": {"directory": stack_env["ETL_PROJECT_DIR"]}}]
            )
            assert deployment.work_pool_name == template.work_pool_name == stack_env["ETL_WORK_POOL"]

            scheduled = wait_for(
                lambda: _runs_of(client, deployment_id),
                SCHEDULER_WAIT_SECONDS,
                f"the scheduler created no run for {folder}",
            )
            first_seen = time.monotonic()
            assert all(_made_by_its_schedule(run, deployment) for run in scheduled), [
                (r.name, r.auto_scheduled, r.created_by) for r in scheduled
            ]

            # The worker takes the first one; then no further run is wanted.
            picked = wait_for(
                lambda: [r for r in _runs_of(client, deployment_id) if r.state_type != StateType.SCHEDULED],
                PICKUP_WAIT_SECONDS,
                f"the worker picked up no run of {folder}",
                interval=0.3,
            )
            picked_at = time.monotonic()
            client.pause_deployment(deployment_id)  # its scheduled runs go, and the scheduler skips it
            run = picked[0]
            assert _made_by_its_schedule(run, deployment), (run.name, run.auto_scheduled, run.created_by)

            def final():
                current = client.read_flow_run(run.id)
                return current if current.state and current.state.is_final() else None

            finished = wait_for(final, RUN_WAIT_SECONDS, f"flow run {run.name} ({run.id}) did not finish")
            done = time.monotonic()
            # A scheduler pass already under way at the pause may still insert its runs: pause again.
            if leftover := _runs_of(client, deployment_id, StateType.SCHEDULED):
                client.pause_deployment(deployment_id)
            others = [
                r for r in _runs_of(client, deployment_id) if r.id != run.id and r.state_type != StateType.SCHEDULED
            ]
            for other in others:  # the worker might have taken a second one before the pause
                wait_for(
                    lambda other=other: client.read_flow_run(other.id).state.is_final(),
                    RUN_WAIT_SECONDS,
                    f"a second run {other.name} did not finish",
                )
        finally:
            client.delete_deployment(deployment_id)

    print(
        f"\nschedule-created run {finished.name} ({finished.id}): created by the scheduler "
        f"{first_seen - created:.1f} s after the deployment, picked up by the worker after "
        f"{picked_at - created:.1f} s, {finished.state.name} after {done - created:.1f} s "
        f"(expected start {finished.expected_start_time.isoformat()}, ran {finished.start_time} .. "
        f"{finished.end_time}, {finished.total_run_time.total_seconds():.1f} s in the flow); "
        f"{len(others)} other run(s) taken before the pause, {len(leftover)} scheduled after it"
    )
    assert finished.state.is_completed(), f"{finished.name}: {finished.state.type} {finished.state.message}"
    # Run by the stack's process worker (it records the process it started), not in this process.
    assert finished.work_pool_name == stack_env["ETL_WORK_POOL"] and finished.infrastructure_pid, (
        finished.work_pool_name,
        finished.infrastructure_pid,
    )
    assert finished.parameters["prefix"] == f"{settings.raw_prefix}{folder}/"

    # What the run did: listed its folder over the window, and the one file is loaded.
    report = wait_for(
        lambda: next((a for a in artifacts_of(finished.id) if a.key == "catch-up-report"), None),
        15,
        f"no catch-up-report artifact of {finished.name}",
    )
    rows = report.data
    figures = {row["figure"]: row["files"] for row in (json.loads(rows) if isinstance(rows, str) else rows)}
    assert figures["files found"] == 1 and figures["failed now"] == 0, figures
    assert figures["loaded now"] + figures["already loaded"] == 1, figures
    ledger = query(settings, "SELECT status FROM {schema}.load_ledger WHERE key = :k AND etag = :e", k=key, e=etag)
    assert [row.status for row in ledger] == ["loaded"]
