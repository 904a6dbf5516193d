"""The embedded local stack: S3 and SQS on a moto server, PostgreSQL from pgserver's binaries, a Prefect server.

`make up` starts it in the background and writes every setting to `.local/env`; `make down` stops it.
Everything listens on 127.0.0.1 only; ports are chosen once and kept in the env file, so a second
`make up` finds the same services (and restarts only what died).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO / ".local"
REGION = "eu-central-1"
PG_SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root

# Settings a user may override by exporting them before `make up`.
DEFAULTS = {
    "WAREHOUSE_SCHEMA": "berlin_rentals",
    "ETL_RAW_BUCKET": "rentals-raw",
    "ETL_RAW_PREFIX": "raw/",
    "ETL_STAGING_BUCKET": "rentals-staging",
    "ETL_STAGING_PREFIX": "clean/",
    "ETL_QUEUE_NAME": "rentals-raw-events",
    "ETL_DLQ_NAME": "rentals-raw-events-dlq",
}


def _log(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status < 500
    except Exception:  # noqa: BLE001 - any failure means "not (yet) healthy"
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    """Running, not merely a zombie: a service we spawned ourselves (as the tests do) must be reaped."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: `make up` exited long ago and init reaps it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _terminate(pid: int, sig: int, *, group: bool) -> None:
    """Signal, wait up to 10 s, then SIGKILL: a stuck service must not outlive `make down`."""
    send = os.killpg if group else os.kill
    try:
        send(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.2)
    if _pid_alive(pid):
        send(pid, signal.SIGKILL)


def _wait(check, what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    tail = ""
    if log is not None and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    raise RuntimeError(f"{what} did not become healthy within {timeout:.0f} s{tail}")


@dataclass
class LocalStack:
    root: Path = DEFAULT_ROOT
    services: tuple[str, ...] = ("s3", "postgres", "prefect", "worker", "bridge")

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.env_file = self.root / "env"
        self.run_dir = self.root / "run"
        self.log_dir = self.root / "logs"
        self.bin = Path(sys.executable).parent

    # ---- settings -------------------------------------------------------------------------
    def _previous(self) -> dict[str, str]:
        from berlin_rentals.config import read_env_file

        return read_env_file(self.env_file) if self.env_file.exists() else {}

    def _port(self, previous: dict[str, str], key: str) -> int:
        return int(previous[key]) if previous.get(key) else _free_port()

    # ---- processes ------------------------------------------------------------------------
    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _running_pid(self, name: str) -> int | None:
        path = self._pid_file(name)
        if not path.exists():
            return None
        pid = int(path.read_text().strip() or 0)
        return pid if pid and _pid_alive(pid) else None

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> int:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=self.root, start_new_session=True,  # outlive `make up`
            )
        self._pid_file(name).write_text(str(process.pid))
        return process.pid

    def _stop_pid(self, name: str) -> None:
        pid = self._running_pid(name)
        if pid is not None:
            _terminate(pid, signal.SIGTERM, group=True)
            _log(f"stopped {name} (pid {pid})")
        self._pid_file(name).unlink(missing_ok=True)

    # ---- moto (S3 + SQS) ------------------------------------------------------------------
    def _start_moto(self, port: int) -> str:
        url = f"http://127.0.0.1:{port}"
        if self._running_pid("moto") and _http_ok(f"{url}/moto-api/"):
            _log(f"moto server already running on {url}")
            return url
        self._stop_pid("moto")
        env = dict(os.environ, MOTO_PORT=str(port))
        self._spawn("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env)
        _wait(lambda: _http_ok(f"{url}/moto-api/"), "moto server", 30, self.log_dir / "moto.log")
        _log(f"moto server (S3, SQS) on {url}")
        return url

    # ---- PostgreSQL -----------------------------------------------------------------------
    def _pg_bin(self) -> Path:
        from pgserver._commands import POSTGRES_BIN_PATH

        return POSTGRES_BIN_PATH

    def _pg_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists
        import stat

        ensure_user_exists(PG_SYSTEM_USER)
        ensure_prefix_permissions(self._pg_bin())
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(self._pg_bin(), read | execute)
        ensure_folder_permissions(self._pg_bin().parent / "lib", read)
        ensure_folder_permissions(self._pg_bin().parent / "share", read | execute)
        return PG_SYSTEM_USER

    def _pg(self, tool: str, args: list[str], user: str | None, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([str(self._pg_bin() / tool), *args], user=user, check=True,
                              capture_output=True, text=True, **kwargs)

    def _start_postgres(self, port: int) -> str:
        data = self.root / "pgdata"
        socket_dir = self.root / "run" / "pgsocket"
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/rentals"
        user = self._pg_user()
        if user:
            from pgserver.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.root)
            self.root.chmod(0o755)
        if not (data / "PG_VERSION").exists():
            data.mkdir(parents=True, exist_ok=True)
            if user:
                shutil.chown(data, user, user)
            self._pg("initdb", ["-D", str(data), "--auth=trust", "--encoding=utf8", "-U", "postgres"], user)
        socket_dir.mkdir(parents=True, exist_ok=True)
        socket_dir.chmod(0o777)
        status = subprocess.run([str(self._pg_bin() / "pg_ctl"), "-D", str(data), "status"],
                                user=user, capture_output=True, text=True)
        if status.returncode == 0 and _port_open(port):
            _log(f"PostgreSQL already running on 127.0.0.1:{port}")
        else:
            log = self.log_dir / "postgres.log"
            log.touch()
            if user:
                shutil.chown(log, user, user)
            self._pg("pg_ctl", ["-D", str(data), "-w", "-t", "60", "-l", str(log),
                                "-o", f"-h 127.0.0.1 -p {port} -k {socket_dir}", "start"], user)
            _log(f"PostgreSQL 16 on 127.0.0.1:{port}")
        pid_line = (data / "postmaster.pid").read_text().splitlines()[0]
        self._pid_file("postgres").write_text(pid_line.strip())
        exists = self._pg("psql", ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-tAc",
                                   "SELECT 1 FROM pg_database WHERE datname = 'rentals'"], None).stdout.strip()
        if exists != "1":
            self._pg("psql", ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", "CREATE DATABASE rentals"], None)
        return url

    def _stop_postgres(self) -> None:
        data = self.root / "pgdata"
        user = PG_SYSTEM_USER if os.geteuid() == 0 else None
        stopped = subprocess.run([str(self._pg_bin() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                                 user=user, capture_output=True, text=True)
        if stopped.returncode == 0:
            _log("stopped PostgreSQL")
        # pg_ctl needs the data directory; if it vanished under a running server, stop it by pid.
        pid = self._running_pid("postgres")
        if pid is not None:
            _terminate(pid, signal.SIGINT, group=False)  # SIGINT is the postmaster's "fast shutdown"
            _log(f"stopped PostgreSQL (pid {pid})")
        self._pid_file("postgres").unlink(missing_ok=True)

    # ---- Prefect server -------------------------------------------------------------------
    def _prefect_env(self, api_url: str | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "PREFECT_HOME": str(self.root / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "true",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        })
        env.pop("PREFECT_API_URL", None)  # the server itself must not point at another API
        if api_url:
            env["PREFECT_API_URL"] = api_url
        return env

    def _start_prefect(self, port: int) -> str:
        api = f"http://127.0.0.1:{port}/api"
        if self._running_pid("prefect") and _http_ok(f"{api}/health"):
            _log(f"Prefect server already running on {api}")
            return api
        self._stop_pid("prefect")
        (self.root / "prefect").mkdir(parents=True, exist_ok=True)
        self._spawn("prefect", [str(self.bin / "prefect"), "server", "start", "--host", "127.0.0.1",
                                "--port", str(port)], self._prefect_env())
        _wait(lambda: _http_ok(f"{api}/health"), "Prefect server", 120, self.log_dir / "prefect.log")
        _log(f"Prefect server on {api} (UI http://127.0.0.1:{port})")
        return api

    # ---- work pool, deployments, worker, bridge ---------------------------------------------
    def _runtime_env(self, env: dict[str, str]) -> dict[str, str]:
        """What the worker's flow runs and the bridge see: the stack's settings, fast polling."""
        runtime = dict(os.environ)
        runtime.update(env)
        runtime.setdefault("PREFECT_WORKER_QUERY_SECONDS", "1")
        runtime.setdefault("PREFECT_WORKER_PREFETCH_SECONDS", "5")
        runtime.setdefault("ETL_BRIDGE_WAIT_SECONDS", "1")
        runtime["PYTHONUNBUFFERED"] = "1"
        return runtime

    def _deploy(self, env: dict[str, str]) -> None:
        runtime = self._runtime_env(env)
        prefect = str(self.bin / "prefect")
        subprocess.run([prefect, "work-pool", "create", env["ETL_WORK_POOL"], "--type", "process", "--overwrite"],
                       env=runtime, cwd=REPO, check=True, capture_output=True, text=True)
        deployed = subprocess.run([prefect, "--no-prompt", "deploy", "--all"], env=runtime, cwd=REPO,
                                  capture_output=True, text=True)
        if deployed.returncode != 0:
            raise RuntimeError(f"prefect deploy failed:\n{deployed.stdout[-3000:]}\n{deployed.stderr[-3000:]}")
        _log(f"deployed ingest-file (S3 event trigger) and catch-up (hourly) to pool {env['ETL_WORK_POOL']}")

    def _start_worker(self, env: dict[str, str]) -> None:
        if self._running_pid("worker"):
            _log("worker already running")
            return
        self._spawn("worker", [str(self.bin / "prefect"), "worker", "start", "--pool", env["ETL_WORK_POOL"],
                               "--type", "process", "--limit", env.get("ETL_WORKER_LIMIT", "4")],
                    self._runtime_env(env))
        _log(f"worker polling pool {env['ETL_WORK_POOL']} (logs: {self.log_dir / 'worker.log'})")

    def _start_bridge(self, env: dict[str, str]) -> None:
        if self._running_pid("bridge"):
            _log("SQS bridge already running")
            return
        self._spawn("bridge", [sys.executable, "-m", "deployments.sqs_bridge"], self._runtime_env(env) | {
            "PYTHONPATH": str(REPO)})
        _log(f"SQS bridge forwarding {env['ETL_QUEUE_NAME']} to Prefect events (logs: {self.log_dir / 'bridge.log'})")

    def deploy(self) -> None:
        """Create the work pool and deploy prefect.yaml (what `make up` does after the server is up)."""
        self._deploy(self._previous())

    def stop_service(self, name: str) -> None:
        """Stop one background service (tests stop the worker or the bridge to simulate an outage)."""
        self._stop_pid(name)

    def start_service(self, name: str) -> None:
        env = self._previous()
        {"worker": self._start_worker, "bridge": self._start_bridge}[name](env)

    # ---- AWS resources and warehouse ------------------------------------------------------
    def _ensure_aws_resources(self, env: dict[str, str]) -> None:
        from deployments.aws_resources import ensure_event_resources

        ensure_event_resources(
            endpoint_url=env["AWS_ENDPOINT_URL"], region=REGION,
            raw_bucket=env["ETL_RAW_BUCKET"], raw_prefix=env["ETL_RAW_PREFIX"],
            staging_bucket=env["ETL_STAGING_BUCKET"], queue_name=env["ETL_QUEUE_NAME"], dlq_name=env["ETL_DLQ_NAME"],
        )
        _log(f"buckets {env['ETL_RAW_BUCKET']}, {env['ETL_STAGING_BUCKET']}; queue {env['ETL_QUEUE_NAME']} "
             f"(DLQ {env['ETL_DLQ_NAME']}) notified for {env['ETL_RAW_PREFIX']}*")

    def _ensure_warehouse(self, env: dict[str, str]) -> None:
        from berlin_rentals.warehouse.ddl import create_warehouse

        create_warehouse(env["WAREHOUSE_URL"], env["WAREHOUSE_SCHEMA"])
        _log(f"warehouse schema {env['WAREHOUSE_SCHEMA']} ready")

    # ---- public API -----------------------------------------------------------------------
    def up(self) -> dict[str, str]:
        for directory in (self.root, self.run_dir, self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        previous = self._previous()
        env = {key: os.environ.get(key) or previous.get(key) or default for key, default in DEFAULTS.items()}
        env.update({
            "AWS_ACCESS_KEY_ID": "testing",  # moto accepts any key; nothing real is ever written here
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "PREFECT_HOME": str(self.root / "prefect"),
        })
        if "s3" in self.services:
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
                os.environ.setdefault(key, env[key])  # boto3 in this process talks to the moto server
            port = self._port(previous, "LOCAL_MOTO_PORT")
            env["LOCAL_MOTO_PORT"] = str(port)
            env["AWS_ENDPOINT_URL"] = self._start_moto(port)
            self._ensure_aws_resources(env)
        external_db = os.environ.get("WAREHOUSE_URL") and not previous.get("LOCAL_PG_PORT")
        if external_db:
            env["WAREHOUSE_URL"] = os.environ["WAREHOUSE_URL"]
        elif "postgres" in self.services:
            port = self._port(previous, "LOCAL_PG_PORT")
            env["LOCAL_PG_PORT"] = str(port)
            env["WAREHOUSE_URL"] = self._start_postgres(port)
        if "WAREHOUSE_URL" in env:
            self._ensure_warehouse(env)
        if "prefect" in self.services:
            port = self._port(previous, "LOCAL_PREFECT_PORT")
            env["LOCAL_PREFECT_PORT"] = str(port)
            env["PREFECT_API_URL"] = self._start_prefect(port)
            env["PREFECT_UI_URL"] = f"http://127.0.0.1:{port}"
        env["ETL_PROJECT_DIR"] = str(REPO)
        env["ETL_WORK_POOL"] = os.environ.get("ETL_WORK_POOL") or previous.get("ETL_WORK_POOL") or "local-process"
        # The env file first: the worker and the bridge are started from it.
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
        if "worker" in self.services and "prefect" in self.services:
            self._deploy(env)
            self._start_worker(env)
        if "bridge" in self.services and "prefect" in self.services and "s3" in self.services:
            self._start_bridge(env)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
        _log(f"settings written to {self.env_file}")
        return env

    def down(self) -> None:
        self._stop_pid("bridge")
        self._stop_pid("worker")
        self._stop_pid("prefect")
        self._stop_pid("moto")
        self._stop_postgres()

    def status(self) -> dict[str, bool]:
        previous = self._previous()
        health = {}
        if previous.get("AWS_ENDPOINT_URL"):
            health["moto"] = _http_ok(previous["AWS_ENDPOINT_URL"] + "/moto-api/")
        if previous.get("LOCAL_PG_PORT"):
            health["postgres"] = _port_open(int(previous["LOCAL_PG_PORT"]))
        if previous.get("PREFECT_API_URL"):
            health["prefect"] = _http_ok(previous["PREFECT_API_URL"] + "/health")
        for name in ("worker", "bridge"):
            if self._pid_file(name).exists():
                health[name] = self._running_pid(name) is not None
        return health


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="where state, logs and env live")
    args = parser.parse_args()
    stack = LocalStack(args.root)
    if args.command == "up":
        stack.up()
    elif args.command == "down":
        stack.down()
    else:
        health = stack.status()
        for name, ok in health.items():
            print(f"{name:10} {'healthy' if ok else 'DOWN'}")
        print(json.dumps({"env": str(stack.env_file)}))
        sys.exit(0 if health and all(health.values()) else 1)


if __name__ == "__main__":
    main()
