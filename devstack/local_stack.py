"""The embedded local stack: S3 and SQS on a moto server, PostgreSQL from pgserver's binaries, a Prefect server.

`make up` starts it in the background and writes every setting to `.local/env`; `make down` stops it.
Everything listens on 127.0.0.1 only; ports are chosen once and kept in the env file, so a second
`make up` finds the same services (and restarts only what died).

moto keeps S3 and SQS in memory, so `down` saves them to `s3/` before it stops moto, and an `up` that
starts moto puts them back before the bridge runs (devstack/s3_snapshot.py); the warehouse and the
Prefect database are on disk. `reset` stops the stack and deletes all of its state.

    python -m devstack.local_stack up|down|status|reset [--root DIR] [--services s3,postgres,prefect,...]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
from pathlib import Path

from berlin_rentals.config import bi_schema_for, local_stack_defaults
from devstack.moto_s3 import LOCAL_CREDENTIALS, LOCAL_VISIBILITY_TIMEOUT, REGION, MotoS3
from devstack.postgres import PG_SYSTEM_USER, Postgres, _pg_bin
from devstack.prefect_services import FLOW_RUN_COMMAND, PREFECT_AUTH_USER, PrefectServices
from devstack.processes import (
    DEFAULT_ROOT,
    REPO,
    Supervisor,
    _api_json,
    _basic_auth,
    _format_env,
    _group_alive,
    _http_ok,
    _pid_alive,
)

# Names other modules (tests, bench/, devstack/sql.py) import from here.
__all__ = [
    "DEFAULT_ROOT",
    "DEFAULTS",
    "FLOW_RUN_COMMAND",
    "LOCAL_CREDENTIALS",
    "LOCAL_VISIBILITY_TIMEOUT",
    "PG_SYSTEM_USER",
    "REGION",
    "REPO",
    "SERVICES",
    "LocalStack",
    "_api_json",
    "_basic_auth",
    "_format_env",
    "_group_alive",
    "_http_ok",
    "_pg_bin",
    "_pid_alive",
    "main",
]

SERVICES = ("s3", "postgres", "prefect", "worker", "bridge", "receiver")
# Settings a user may override by exporting them before `make up`; their defaults are Settings' own.
DEFAULTS = local_stack_defaults()


class LocalStack(Supervisor, MotoS3, Postgres, PrefectServices):
    """One stack rooted at a directory: `env`, `logs/`, `run/` (pid files), `pgdata/`, `prefect/`."""

    def __init__(self, root: Path | str = DEFAULT_ROOT, *, services: tuple[str, ...] = SERVICES) -> None:
        unknown = set(services) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services {sorted(unknown)}; known: {', '.join(SERVICES)}")
        self.root = Path(root).resolve()
        self.services = tuple(services)
        self.env_file = self.root / "env"
        self.run_dir = self.root / "run"
        self.log_dir = self.root / "logs"
        self.pg_data = self.root / "pgdata"
        self.s3_snapshot = self.root / "s3"  # moto's S3 objects and queued messages, saved by `down`
        self.bin = Path(sys.executable).parent
        self._phase = "stack"

    # ---- public API ----------------------------------------------------------------------------
    def _settings(self, previous: dict[str, str]) -> dict[str, str]:
        env = {key: os.environ.get(key) or previous.get(key) or default for key, default in DEFAULTS.items()}
        env["WAREHOUSE_BI_SCHEMA"] = (
            os.environ.get("WAREHOUSE_BI_SCHEMA")
            or previous.get("WAREHOUSE_BI_SCHEMA")
            or bi_schema_for(env["WAREHOUSE_SCHEMA"])
        )
        env.update(LOCAL_CREDENTIALS)
        env["PREFECT_HOME"] = str(self.root / "prefect")
        env["ETL_PROJECT_DIR"] = str(REPO)
        env["ETL_WORK_POOL"] = os.environ.get("ETL_WORK_POOL") or previous.get("ETL_WORK_POOL") or "local-process"
        # The env file's, never the environment's: a shell that sourced another root's file must not
        # hand this stack that one's password. Kept across down/up, so a sourced shell stays right.
        env["PREFECT_API_AUTH_STRING"] = previous.get("PREFECT_API_AUTH_STRING") or (
            f"{PREFECT_AUTH_USER}:{secrets.token_urlsafe(24)}"
        )
        # The key of the agents' pseudonyms: generated once and read back, so a pseudonym stays the same
        # person across `make down`/`make up` (a new salt would make every agent a new one).
        salt = os.environ.get("ETL_MASK_SALT") or previous.get("ETL_MASK_SALT") or secrets.token_hex(32)
        kept = salt == previous.get("ETL_MASK_SALT")
        env["ETL_MASK_SALT"] = salt
        # Its name (a new salt, a new name): random, since nothing computed from the salt may be shown.
        env["ETL_MASK_SALT_ID"] = (
            os.environ.get("ETL_MASK_SALT_ID")
            or (previous.get("ETL_MASK_SALT_ID") if kept else None)
            or f"local-{secrets.token_hex(4)}"
        )
        return env

    def up(self) -> dict[str, str]:
        """Start what is not running, ensure buckets, queues and schema; return (and write) the settings."""
        self._phase = "up"
        for directory in (self.root, self.run_dir, self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        with self._locked():
            previous = self._previous()
            env = self._settings(previous)
            moto_started = "s3" in self.services and not self._moto_healthy(previous.get("LOCAL_MOTO_PORT"))
            loss = self._s3_loss() if moto_started else None
            if "s3" in self.services:
                self._up_s3(env, previous, moto_started, loss)
            self._up_warehouse(env, previous, moto_started, loss)
            if "prefect" in self.services:
                self._up_prefect(env, previous)
            if "receiver" in self.services:
                port = self._start_receiver(previous.get("LOCAL_RECEIVER_PORT"))
                env |= {"LOCAL_RECEIVER_PORT": str(port), "ETL_RECEIVER_URL": f"http://127.0.0.1:{port}/"}
            # Before the worker and the bridge: start_service() reads their settings from this file.
            self._write_env(env)
            if "prefect" in self.services:
                self._up_runs(env)
        self._say(f"settings written to {self.env_file} (source it to use them from a shell)")
        return env

    def _up_s3(self, env: dict[str, str], previous: dict[str, str], moto_started: bool, loss) -> None:
        port = self._start_moto(previous.get("LOCAL_MOTO_PORT"))
        env |= {"LOCAL_MOTO_PORT": str(port), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        # A fresh moto is empty: objects back first, then the notification, so none is announced.
        manifest = self._restore_s3(env, loss) if moto_started else None
        self._ensure_aws_resources(env)
        self._restore_messages(env, manifest)

    def _up_warehouse(self, env: dict[str, str], previous: dict[str, str], moto_started: bool, loss) -> None:
        external = self._external_warehouse(previous)
        if external:
            env["WAREHOUSE_URL"] = external
            self._say("WAREHOUSE_URL is set: using that database, not starting PostgreSQL")
        elif "postgres" in self.services:
            port = self._start_postgres(previous.get("LOCAL_PG_PORT"))
            env |= {
                "LOCAL_PG_PORT": str(port),
                "WAREHOUSE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{port}/rentals",
                # the same database as a plain libpq URL, for psql and other tools (`make sql`)
                "WAREHOUSE_PSQL_URL": f"postgresql://postgres@127.0.0.1:{port}/rentals",
            }
        if "WAREHOUSE_URL" not in env:
            return
        self._ensure_warehouse(env)
        if env.get("LOCAL_PG_PORT"):
            env |= self._role_logins(int(env["LOCAL_PG_PORT"]), env, previous)
        if moto_started:
            self._check_ledger_against_s3(env, loss)

    def _up_prefect(self, env: dict[str, str], previous: dict[str, str]) -> None:
        if not previous.get("PREFECT_API_AUTH_STRING"):
            # Started before the API had a password: they would keep calling it without one.
            for name in ("bridge", "worker"):
                self._stop_pid(name)
        # On its database of the stack's PostgreSQL (started above); on SQLite without one.
        port = self._start_prefect(
            previous.get("LOCAL_PREFECT_PORT"),
            env["PREFECT_API_AUTH_STRING"],
            env.get("LOCAL_PREFECT_DATABASE_URL"),
        )
        env |= {
            "LOCAL_PREFECT_PORT": str(port),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_UI_URL": f"http://127.0.0.1:{port}",
        }

    def _up_runs(self, env: dict[str, str]) -> None:
        """What runs flows on the server: the results block, the deployments and the worker, the bridge."""
        if "s3" in self.services:
            self._ensure_results_block(env)
        if "worker" in self.services:
            self._deploy(env)
            self._start_worker(env)
        if "s3" in self.services and "bridge" in self.services:
            self._start_bridge(env)

    def down(self, *, save_s3: bool = True) -> None:
        """Stop everything this root started; data, logs and the env file stay, and S3 is saved to `s3/`
        (once nothing writes to it any more: after the bridge and the worker, before moto)."""
        self._phase = "down"
        if not self.root.exists():
            self._say("nothing to stop")
            return
        with self._locked():
            stopped = [self._stop_pid(name) for name in ("bridge", "worker")]
            if save_s3:
                self._save_s3()
            stopped += [self._stop_pid(name) for name in ("prefect", "moto", "receiver")]
            stopped.append(self._stop_postgres())
        if not any(stopped):
            self._say("nothing was running")

    def reset(self) -> None:
        """Stop the stack and delete its state: warehouse data, Prefect's database, the S3 snapshot, logs.

        The env file stays (the next `up` keeps the same ports, so a shell that sourced it stays right),
        and so does everything else under the root that is not the stack's state (tools, the venv)."""
        if not self.root.exists():
            self._phase = "reset"
            self._say("nothing to reset")
            return
        self.down(save_s3=False)
        self._phase = "reset"
        deleted = []
        with self._locked():
            for path in (
                self.pg_data,
                self.root / "prefect",
                self.s3_snapshot,
                self.log_dir,
                self.run_dir / "pgsocket",
            ):
                if path.exists():
                    shutil.rmtree(path)
                    deleted.append(path.name)
            for pid_file in self.run_dir.glob("*.pid"):
                pid_file.unlink()
        if self._previous().get("WAREHOUSE_URL") and not self._previous().get("LOCAL_PG_PORT"):
            self._say("WAREHOUSE_URL points at a database of your own: it was not touched")
        self._say(
            f"deleted {', '.join(deleted) or 'nothing (no state)'} in {self.root}; the next `make up` starts from empty"
        )

    def status(self) -> dict[str, bool]:
        """Service name -> healthy, for the services the env file knows of (and worker/bridge if started)."""
        previous = self._previous()
        health = {}
        if previous.get("LOCAL_MOTO_PORT"):
            health["moto"] = self._moto_healthy(previous["LOCAL_MOTO_PORT"])
        if previous.get("LOCAL_PG_PORT"):
            health["postgres"] = self._postgres_healthy(previous["LOCAL_PG_PORT"])
        if previous.get("LOCAL_PREFECT_PORT"):
            health["prefect"] = self._prefect_healthy(previous["LOCAL_PREFECT_PORT"])
        if previous.get("LOCAL_RECEIVER_PORT"):
            health["receiver"] = self._receiver_healthy(previous["LOCAL_RECEIVER_PORT"])
        for name in ("worker", "bridge"):
            if self._pid_file(name).exists():
                health[name] = self._running_pid(name) is not None
        return health

    def addresses(self) -> dict[str, str]:
        previous = self._previous()
        return {
            "moto": previous.get("AWS_ENDPOINT_URL", ""),
            "postgres": previous.get("WAREHOUSE_URL", "") if previous.get("LOCAL_PG_PORT") else "",
            "prefect": previous.get("PREFECT_UI_URL", ""),
            "worker": f"pool {previous.get('ETL_WORK_POOL', '')}",
            "bridge": f"queue {previous.get('ETL_QUEUE_NAME', '')}",
            "receiver": f"{previous.get('ETL_RECEIVER_URL', '')} (alerts; log {self.log_dir / 'receiver.log'})",
        }


def _print_status(stack: LocalStack) -> int:
    health = stack.status()
    if not health:
        print(f"[status] no stack in {stack.root} (run `make up`)")
        return 1
    addresses = stack.addresses()
    for name, ok in health.items():
        print(f"[status] {name:9} {'healthy' if ok else 'DOWN':8} {addresses.get(name, '')}")
    try:
        schedule = stack.schedule_status()
    except (OSError, ValueError, KeyError) as error:
        schedule = (False, f"could not read the catch-up's schedule: {error}")
    if schedule is not None:
        print(f"[status] {'schedule':9} {'healthy' if schedule[0] else 'FAILING':8} {schedule[1]}")
        health["schedule"] = schedule[0]
    external = stack._previous().get("WAREHOUSE_URL") if "postgres" not in health else None
    if external:
        print(f"[status] warehouse external ({external.split('@')[-1]})")  # never print a password
    print(f"[status] settings in {stack.env_file}")
    return 0 if all(health.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "reset"])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="where state, logs and env live")
    parser.add_argument(
        "--services", default=",".join(SERVICES), help=f"comma-separated subset of {','.join(SERVICES)} (up only)"
    )
    args = parser.parse_args(argv)
    stack = LocalStack(args.root, services=tuple(s for s in args.services.split(",") if s))
    try:
        if args.command == "up":
            stack.up()
        elif args.command == "down":
            stack.down()
        elif args.command == "reset":
            stack.reset()
        else:
            return _print_status(stack)
    except (RuntimeError, ValueError) as error:
        # The message already says what failed, with the service's log tail; a traceback would bury it.
        print(f"[{args.command}] FAILED: {error}", file=sys.stderr)
        print(f"[{args.command}] logs in {stack.log_dir}; `make down` stops whatever did start", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
