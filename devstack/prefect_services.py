"""The stack's Prefect: its server, the alerts' receiver, the work pool and deployments, the worker and the bridge."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from devstack.processes import REPO, _api_json, _http_ok

# The first start migrates Prefect's database: 10-30 s on 2 cores, more under load.
PREFECT_START_SECONDS = 120
# The Prefect API's basic-auth user; the password is generated once per root and kept in the env file.
PREFECT_AUTH_USER = "admin"
# A flow run's process: the engine itself. Prefect's default without a command is its workspace
# supervisor, a Python process that imports Prefect, runs the pull steps and only then execs this same
# engine, which imports Prefect again: 1.2 s more per run at the median here (bench/README.md, "Event latency").
# The engine runs the deployment's pull steps itself; what the supervisor adds (installing a
# workspace's dependencies with uv, PREFECT_RUNNER_AUTO_INSTALL_DEPENDENCIES) this stack never uses.
FLOW_RUN_COMMAND = shlex.join([sys.executable, "-m", "prefect.engine"])


class PrefectServices:
    """The Prefect server and what runs against it (a mixin of LocalStack)."""

    bin: Path

    # ---- Prefect server ----------------------------------------------------------------------
    def _prefect_server_env(self, port: int, auth_string: str, database_url: str | None) -> dict[str, str]:
        env = dict(os.environ)
        # The server must not point at another API, nor at a database someone exported for theirs
        # (nor take its host, user or password from one: every PREFECT_*_DATABASE_* setting goes).
        env.pop("PREFECT_API_URL", None)
        for key in [key for key in env if key.startswith(("PREFECT_API_DATABASE_", "PREFECT_SERVER_DATABASE_"))]:
            env.pop(key)
        if database_url:
            # Its own database on the stack's PostgreSQL, as production runs it; without a PostgreSQL
            # of the stack's own it keeps SQLite, prefect.db in PREFECT_HOME.
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
        env.update(
            {
                # Every API request but GET /health must carry it (the UI asks for it on its login page);
                # the client-side name too, for whatever in the server process calls its own API.
                "PREFECT_SERVER_API_AUTH_STRING": auth_string,
                "PREFECT_API_AUTH_STRING": auth_string,
                "PREFECT_HOME": str(self.root / "prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_UI_ENABLED": "true",
                "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
                # The UI asks /ui-settings where its API is; without these it answers Prefect's default
                # 127.0.0.1:4200, not the port this server listens on, and shows no runs (or another
                # server's). `--port` alone does not change what the UI is told.
                "PREFECT_SERVER_API_HOST": "127.0.0.1",
                "PREFECT_SERVER_API_PORT": str(port),
                "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
            }
        )
        return env

    def _prefect_healthy(self, port: str | None) -> bool:
        return (
            bool(port) and self._running_pid("prefect") is not None and _http_ok(f"http://127.0.0.1:{port}/api/health")
        )

    def _prefect_locked(self, port: str) -> bool:
        """The server refuses a request without credentials (one started before the API had a password does not)."""
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/admin/version", timeout=5).close()
        except urllib.error.HTTPError as error:
            return error.code == 401
        except OSError:
            return False
        return False

    def _start_prefect(self, remembered: str | None, auth_string: str, database_url: str | None = None) -> int:
        """The server on its database: `database_url` (postgresql+asyncpg), or SQLite in PREFECT_HOME without one."""
        database = _database_name(database_url)
        # What the running server was started on: a server on SQLite (an older `make up`, or a stack
        # without PostgreSQL) is restarted on the PostgreSQL database once the stack has one.
        started_on = self.run_dir / "prefect.database"
        if self._prefect_healthy(remembered):
            was = started_on.read_text().strip() if started_on.exists() else _database_name(None)
            if not self._prefect_locked(remembered):
                self._say("the Prefect server answers without credentials: restarting it with basic auth")
            elif was != database:
                self._say(f"the Prefect server runs on {was}: restarting it on {database}")
            else:
                self._say(f"Prefect server already running on http://127.0.0.1:{remembered}/api")
                return int(remembered)
        self._stop_pid("prefect")
        port = self._pick_port(remembered, "Prefect")
        (self.root / "prefect").mkdir(parents=True, exist_ok=True)
        args = [str(self.bin / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        self._spawn("prefect", args, self._prefect_server_env(port, auth_string, database_url))
        started_on.write_text(database + "\n")
        self._wait_healthy("prefect", lambda: _http_ok(f"http://127.0.0.1:{port}/api/health"), PREFECT_START_SECONDS)
        self._say(
            f"Prefect server on http://127.0.0.1:{port}/api ({database}; UI http://127.0.0.1:{port}; it asks for "
            f"PREFECT_API_AUTH_STRING from {self.env_file})"
        )
        return port

    # ---- the alerts' receiver (a stand-in for Slack) -------------------------------------------
    def _receiver_healthy(self, port: str | None) -> bool:
        return self._http_healthy("receiver", port, "/")

    def _start_receiver(self, remembered: str | None) -> int:
        def command(port: int) -> list[str]:
            return [sys.executable, "-m", "devstack.receiver", "--port", str(port)]

        def env(port: int) -> dict[str, str]:
            return dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")

        port = self._start_http("receiver", "alert receiver", remembered, "/", command, env)
        if port is None:
            return int(remembered)
        self._say(
            f"alert receiver on http://127.0.0.1:{port}/ (each notification it gets: {self.log_dir / 'receiver.log'})"
        )
        return port

    def _ensure_automations(self, env: dict[str, str], runtime: dict[str, str]) -> None:
        """The alerts (deployments/automations.py), pointed at the receiver when the block is a webhook."""
        from berlin_rentals.config import AlertSettings
        from deployments.automations import LOCAL_BLOCK_SLUG

        block = AlertSettings.from_env(runtime).notification_block
        args = [sys.executable, "-m", "deployments.automations"]
        if env.get("ETL_RECEIVER_URL") and block.startswith(LOCAL_BLOCK_SLUG + "/"):
            args += ["--webhook-url", env["ETL_RECEIVER_URL"]]
        elif block.startswith(LOCAL_BLOCK_SLUG + "/"):
            self._say("no alert receiver in this stack: the alerts' automations are not created")
            return
        done = subprocess.run(args, env=runtime | {"PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"creating the alerts' automations failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        for line in done.stdout.strip().splitlines():
            self._say(line)

    # ---- work pool, deployments, worker, bridge ------------------------------------------------
    def _runtime_env(self, env: dict[str, str]) -> dict[str, str]:
        """What the worker's flow runs and the bridge see: the stack's settings, fast polling."""
        runtime = dict(os.environ)
        runtime.update(env)
        runtime.setdefault("PREFECT_WORKER_QUERY_SECONDS", "1")
        runtime.setdefault("PREFECT_WORKER_PREFETCH_SECONDS", "5")
        runtime.setdefault("ETL_BRIDGE_WAIT_SECONDS", "1")
        runtime["PYTHONUNBUFFERED"] = "1"
        return runtime

    def _pool_template(self) -> Path:
        """Prefect's process pool template with the engine as every flow run's command (FLOW_RUN_COMMAND)."""
        from prefect.workers.process import ProcessWorker

        template = ProcessWorker.get_default_base_job_template()
        template["variables"]["properties"]["command"]["default"] = FLOW_RUN_COMMAND
        path = self.run_dir / "process-pool-template.json"
        path.write_text(json.dumps(template, indent=2) + "\n")
        return path

    def _deploy(self, env: dict[str, str]) -> None:
        runtime = self._runtime_env(env)
        prefect = str(self.bin / "prefect")
        pool = subprocess.run(
            [
                prefect,
                "work-pool",
                "create",
                env["ETL_WORK_POOL"],
                "--type",
                "process",
                "--base-job-template",
                str(self._pool_template()),
                "--overwrite",
            ],
            env=runtime,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if pool.returncode != 0:
            raise RuntimeError(f"prefect work-pool create failed:\n{pool.stdout[-3000:]}\n{pool.stderr[-3000:]}")
        deployed = subprocess.run(
            [prefect, "--no-prompt", "deploy", "--all"], env=runtime, cwd=REPO, capture_output=True, text=True
        )
        if deployed.returncode != 0:
            raise RuntimeError(f"prefect deploy failed:\n{deployed.stdout[-3000:]}\n{deployed.stderr[-3000:]}")
        # Loads wait for a slot of this limit (tasks/load.py): created or resized here, idempotently.
        limit = subprocess.run(
            [sys.executable, "-m", "deployments.concurrency"],
            env=runtime | {"PYTHONPATH": str(REPO)},
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if limit.returncode != 0:
            raise RuntimeError(f"creating the load concurrency limit failed:\n{limit.stderr[-3000:]}")
        self._say(limit.stdout.strip())
        self._ensure_automations(env, runtime)
        self._say(
            f"deployed prefect.yaml to pool {env['ETL_WORK_POOL']}: ingest-file (S3 event trigger), catch-up "
            "(hourly, and its fan-out's shares), market-report (daily), replay-rejects and "
            "release-parked (manual)"
        )

    def _ensure_results_block(self, env: dict[str, str]) -> None:
        """The S3Bucket block the transform-stage step's results persist to (deployments/results.py), on moto."""
        done = subprocess.run(
            [sys.executable, "-m", "deployments.results"],
            env=self._runtime_env(env) | {"PYTHONPATH": str(REPO)},
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"creating the result storage block failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        self._say(done.stdout.strip())

    def _start_worker(self, env: dict[str, str]) -> None:
        if self._running_pid("worker"):
            self._say("worker already running")
            return
        self._spawn(
            "worker",
            [
                str(self.bin / "prefect"),
                "worker",
                "start",
                "--pool",
                env["ETL_WORK_POOL"],
                "--type",
                "process",
                "--limit",
                env.get("ETL_WORKER_LIMIT", "4"),
            ],
            self._runtime_env(env),
        )
        self._say(f"worker polling pool {env['ETL_WORK_POOL']} (logs: {self.log_dir / 'worker.log'})")

    def _start_bridge(self, env: dict[str, str]) -> None:
        if self._running_pid("bridge"):
            self._say("SQS bridge already running")
            return
        self._spawn(
            "bridge",
            [sys.executable, "-m", "bridge.sqs_bridge"],
            self._runtime_env(env) | {"PYTHONPATH": str(REPO)},
        )
        self._say(
            f"SQS bridge forwarding {env['ETL_QUEUE_NAME']} to Prefect events (logs: {self.log_dir / 'bridge.log'})"
        )

    def deploy(self) -> None:
        """Create the work pool and deploy prefect.yaml (what `make up` does after the server is up)."""
        self._deploy(self._previous())

    def stop_service(self, name: str) -> None:
        """Stop one background service (tests stop the worker or the bridge to simulate an outage)."""
        self._stop_pid(name)

    def start_service(self, name: str) -> None:
        env = self._previous()
        {"worker": self._start_worker, "bridge": self._start_bridge}[name](env)

    def schedule_status(self) -> tuple[bool, str] | None:
        """(healthy, what to print) for the catch-up's schedule; None before it is deployed.

        The server answering /health says nothing of its scheduler: with a dependency that broke it
        (SQLAlchemy 2.1), the catch-up kept its cron and never got a run, while status said healthy."""
        previous = self._previous()
        api, auth_string = previous.get("PREFECT_API_URL"), previous.get("PREFECT_API_AUTH_STRING")
        if not api or not self._prefect_healthy(previous.get("LOCAL_PREFECT_PORT")):
            return None
        try:
            deployment = _api_json(f"{api}/deployments/name/catch-up/catch-up", auth_string=auth_string)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

        def runs(states: list[str], sort: str) -> list[dict]:
            return _api_json(
                f"{api}/flow_runs/filter",
                auth_string=auth_string,
                body={
                    "deployments": {"id": {"any_": [deployment["id"]]}},
                    "flow_runs": {"state": {"type": {"any_": states}}},
                    "sort": sort,
                    "limit": 1,
                },
            )

        upcoming = runs(["SCHEDULED"], "EXPECTED_START_TIME_ASC")
        last = runs(["COMPLETED", "FAILED", "CRASHED", "CANCELLED"], "EXPECTED_START_TIME_DESC")
        last_text = f"; last {last[0]['expected_start_time'][11:16]} UTC {last[0]['state_name']}" if last else ""
        active = any(schedule.get("active") for schedule in deployment.get("schedules", []))
        if deployment.get("paused") or not active:
            return True, f"catch-up paused{last_text}"
        if not upcoming:
            return False, (
                "catch-up has a schedule but no upcoming run: Prefect's scheduler is failing "
                f"(see {self.log_dir / 'prefect.log'}){last_text}"
            )
        return True, f"catch-up next run {upcoming[0]['expected_start_time'][11:16]} UTC{last_text}"


def _database_name(database_url: str | None) -> str:
    """The Prefect server's database as the stack names it in its output, without the password."""
    if not database_url:
        return "SQLite"
    import sqlalchemy as sa

    url = sa.make_url(database_url)
    return f"PostgreSQL database {url.database} at {url.host}:{url.port}"
