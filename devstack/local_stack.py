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
import base64
import contextlib
import fcntl
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from berlin_rentals.config import bi_schema_for, local_stack_defaults

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO / ".local"
REGION = "eu-central-1"
PG_SYSTEM_USER = "pgserver"  # initdb and postgres refuse to run as root
SERVICES = ("s3", "postgres", "prefect", "worker", "bridge", "receiver")
STOP_GRACE_SECONDS = 10
PREFECT_START_SECONDS = 120  # first start migrates the SQLite database: 10-30 s on 2 cores, more under load

# Settings a user may override by exporting them before `make up`; their defaults are Settings' own.
DEFAULTS = local_stack_defaults()
# A local run takes seconds, not minutes: a message the bridge did not delete comes back after this.
LOCAL_VISIBILITY_TIMEOUT = 60
# The Prefect API's basic-auth user; the password is generated once per root and kept in the env file.
PREFECT_AUTH_USER = "admin"
# A flow run's process: the engine itself. Prefect's default without a command is its workspace
# supervisor, a Python process that imports Prefect, runs the pull steps and only then execs this same
# engine, which imports Prefect again: 1.2 s more per run at the median here (bench/README.md, "Event latency").
# The engine runs the deployment's pull steps itself; what the supervisor adds (installing a
# workspace's dependencies with uv, PREFECT_RUNNER_AUTO_INSTALL_DEPENDENCIES) this stack never uses.
FLOW_RUN_COMMAND = shlex.join([sys.executable, "-m", "prefect.engine"])
# moto accepts any key; nothing real is ever written to the env file.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


# ---- small process and network helpers --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _basic_auth(auth_string: str | None) -> dict[str, str]:
    """The Authorization header Prefect's clients send for PREFECT_API_AUTH_STRING (none without one)."""
    if not auth_string:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status < 400
    except Exception:  # noqa: BLE001 - any failure means "not (yet) healthy"
        return False


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]; None if there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str | None:
    """The kernel's start tick of a process: a pid file names our process only while this still matches."""
    stat = _proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def _reap(pid: int) -> None:
    # A service spawned by this very process (the tests do that) stays a zombie until it is waited for.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _pid_alive(pid: int, started: str | None = None) -> bool:
    """Running (not a zombie) and, when `started` is given, still the process the pid file was written for."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = _proc_stat(pid)
    if stat is None:
        return not Path("/proc").is_dir()  # without /proc, trust kill(0)
    return stat[0] != "Z" and (started is None or _start_time(pid) == started)


def _group_alive(pgid: int) -> bool:
    """Some process of the group still runs; zombies waiting for init to reap them do not count."""
    _reap(pgid)
    if not Path("/proc").is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    for entry in Path("/proc").iterdir():
        stat = _proc_stat(int(entry.name)) if entry.name.isdigit() else None
        if stat and stat[2] == str(pgid) and stat[0] != "Z":
            return True
    return False


def _terminate(pid: int, sig: int, *, group: bool) -> None:
    """Signal, wait up to 10 s, then SIGKILL: a stuck service must not outlive `make down`."""
    send = os.killpg if group else os.kill
    alive = _group_alive if group else _pid_alive
    try:
        send(pid, sig)
    except ProcessLookupError:
        return
    if _wait_until(lambda: not alive(pid), STOP_GRACE_SECONDS):
        return
    with contextlib.suppress(ProcessLookupError):
        send(pid, signal.SIGKILL)
    _wait_until(lambda: not alive(pid), 5)


def _wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _api_json(url: str, body: dict | None = None, timeout: float = 5.0, *, auth_string: str | None = None):
    """GET (or POST a JSON body to) the Prefect API, authenticated when it has an auth string; its JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Content-Type": "application/json", **_basic_auth(auth_string)},
        method="POST" if data is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _log_tail(log: Path, lines: int = 30) -> str:
    if not log.exists():
        return ""
    return "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _format_env(env: dict[str, str]) -> str:
    """`export KEY=VALUE` lines a shell can source as they are: so no value may need quoting.

    Exported, so that `source .local/env` hands them to the commands run after it (`prefect
    deployment run` without PREFECT_API_URL would start a temporary server of its own)."""
    for key, value in env.items():
        if not value or any(ch.isspace() or ch in "\"'$`\\;&|<>()" for ch in value):
            raise ValueError(
                f"{key}={value!r} cannot be written unquoted to the env file "
                f"(move the checkout or --root to a path without spaces or shell characters)"
            )
    return "".join(f"export {key}={value}\n" for key, value in sorted(env.items()))


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet_pgserver_import() -> Iterator[None]:
    # Importing pgserver asks platformdirs for a runtime dir we never use, which warns; keep `make up` quiet.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _pg_bin() -> Path:
    with _quiet_pgserver_import():
        from pgserver._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


# ---- the stack --------------------------------------------------------------------------------


class LocalStack:
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

    def _say(self, message: str) -> None:
        print(f"[{self._phase}] {message}", flush=True)

    # ---- settings -----------------------------------------------------------------------------
    def _previous(self) -> dict[str, str]:
        from berlin_rentals.config import read_env_file

        return read_env_file(self.env_file) if self.env_file.exists() else {}

    def _write_env(self, env: dict[str, str]) -> None:
        # Atomically: a worker or a shell may be reading the previous file right now.
        # Owner-only: it holds the Prefect API's password.
        partial = self.env_file.with_name("env.partial")
        partial.touch(mode=0o600)
        partial.chmod(0o600)
        partial.write_text(_format_env(env))
        partial.replace(self.env_file)

    def _pick_port(self, remembered: str | None, service: str) -> int:
        """The remembered port, unless something that is not ours listens there now."""
        if remembered and not _port_open(int(remembered)):
            return int(remembered)
        if remembered:
            self._say(f"port {remembered} (kept for {service}) is taken by another process; choosing a new one")
        return _free_port()

    def _external_warehouse(self, previous: dict[str, str]) -> str | None:
        """WAREHOUSE_URL exported by the user; not the local one a shell got from `source .local/env`."""
        url = os.environ.get("WAREHOUSE_URL")
        if not url or (previous.get("LOCAL_PG_PORT") and url == previous.get("WAREHOUSE_URL")):
            return None
        return url

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Two `make up` at once (say `make demo` and `make bench` in two shells) must not race.
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # ---- pid files and background processes ----------------------------------------------------
    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _write_pid(self, name: str, pid: int) -> None:
        self._pid_file(name).write_text(f"{pid} {_start_time(pid) or ''}".strip() + "\n")

    def _running_pid(self, name: str) -> int | None:
        """The pid in `run/<name>.pid` if that very process still runs (pids get reused after a reboot)."""
        try:
            fields = self._pid_file(name).read_text().split()
        except FileNotFoundError:
            return None
        if not fields or not fields[0].isdigit():
            return None
        pid, started = int(fields[0]), (fields[1] if len(fields) > 1 else None)
        return pid if _pid_alive(pid, started) else None

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> int:
        with (self.log_dir / f"{name}.log").open("ab") as out:
            process = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.root,
                start_new_session=True,  # outlive `make up`, and stop as a group
            )
        self._write_pid(name, process.pid)
        return process.pid

    def _wait_healthy(self, name: str, check: Callable[[], bool], timeout: float) -> None:
        """Poll until healthy; fail at once, with the log's tail, if the process died meanwhile."""
        deadline = time.monotonic() + timeout
        log = self.log_dir / f"{name}.log"
        while not check():
            if self._running_pid(name) is None:
                raise RuntimeError(f"{name} exited during start-up{_log_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not healthy within {timeout:.0f} s{_log_tail(log)}")
            time.sleep(0.3)

    def _stop_pid(self, name: str) -> bool:
        pid = self._running_pid(name)
        if pid is not None:
            _terminate(pid, signal.SIGTERM, group=True)
            self._say(f"stopped {name} (pid {pid})")
        self._pid_file(name).unlink(missing_ok=True)
        return pid is not None

    # ---- small HTTP services (moto, the alerts' receiver) ---------------------------------------
    def _http_healthy(self, name: str, port: str | None, path: str) -> bool:
        return bool(port) and self._running_pid(name) is not None and _http_ok(f"http://127.0.0.1:{port}{path}")

    def _start_http(
        self,
        name: str,
        what: str,
        remembered: str | None,
        path: str,
        command: Callable[[int], list[str]],
        env: Callable[[int], dict[str, str]],
    ) -> int | None:
        """The port of the service `name` started on (None: it already ran, on `remembered`)."""
        if self._http_healthy(name, remembered, path):
            self._say(f"{what} already running on http://127.0.0.1:{remembered}")
            return None
        self._stop_pid(name)
        port = self._pick_port(remembered, what)
        self._spawn(name, command(port), env(port))
        self._wait_healthy(name, lambda: _http_ok(f"http://127.0.0.1:{port}{path}"), 30)
        return port

    # ---- moto (S3 + SQS) ---------------------------------------------------------------------
    def _moto_healthy(self, port: str | None) -> bool:
        return self._http_healthy("moto", port, "/moto-api/")

    def _start_moto(self, remembered: str | None) -> int:
        def command(port: int) -> list[str]:
            return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]

        def env(port: int) -> dict[str, str]:
            return dict(os.environ, MOTO_PORT=str(port))

        port = self._start_http("moto", "moto server", remembered, "/moto-api/", command, env)
        if port is None:
            return int(remembered)
        self._say(f"moto server (S3, SQS) on http://127.0.0.1:{port}")
        return port

    def _ensure_aws_resources(self, env: dict[str, str]) -> None:
        from berlin_rentals.config import ProvisioningSettings
        from provisioning.aws import ensure, staging_expire_prefixes

        # Retention, receives and results prefix as a user exported them; the rest is the stack's own.
        settings = ProvisioningSettings.from_env({**os.environ, **env})
        with _environ(LOCAL_CREDENTIALS):  # never sign requests to moto with whatever real keys are exported
            ensure(settings, visibility_timeout=LOCAL_VISIBILITY_TIMEOUT)
        self._say(
            f"buckets {env['ETL_RAW_BUCKET']}, {env['ETL_STAGING_BUCKET']}; queue {env['ETL_QUEUE_NAME']} "
            f"(DLQ {env['ETL_DLQ_NAME']}) notified of {env['ETL_RAW_BUCKET']}/{env['ETL_RAW_PREFIX']}*; "
            f"{', '.join(staging_expire_prefixes(settings))} in {env['ETL_STAGING_BUCKET']} expire after "
            f"{settings.staging_retention_days} days"
        )

    # ---- S3 across restarts (moto keeps it in memory) -------------------------------------------
    def _save_s3(self) -> None:
        """Snapshot moto's buckets and queued messages to `s3/` (in `down`, after the bridge and worker stopped)."""
        from devstack.s3_snapshot import take_snapshot

        previous = self._previous()
        failed = self.s3_snapshot / "snapshot-failed"
        if not self._moto_healthy(previous.get("LOCAL_MOTO_PORT")):
            if self._pid_file("moto").exists():
                self._say(
                    "WARNING: moto is not running, so S3 could not be saved; the next `make up` will say "
                    "what the warehouse's ledger lost"
                )
            return
        try:
            report = take_snapshot(
                previous["AWS_ENDPOINT_URL"],
                REGION,
                self.s3_snapshot,
                queues=[previous[key] for key in ("ETL_QUEUE_NAME", "ETL_DLQ_NAME") if previous.get(key)],
                source={"root": str(self.root)},
            )
        except Exception as error:  # noqa: BLE001 - `down` must still stop everything
            self.s3_snapshot.mkdir(parents=True, exist_ok=True)
            failed.write_text(f"{error}\n")
            self._say(f"WARNING: saving S3 failed ({error}); the next `make up` restores an older snapshot, if any")
            return
        failed.unlink(missing_ok=True)
        self._say(
            f"saved S3: {report.objects} objects ({report.bytes / 1e6:.1f} MB) in {report.buckets} buckets, "
            f"{report.messages} queued messages, to {self.s3_snapshot} ({report.seconds:.1f} s)"
        )
        for warning in report.warnings:
            self._say(f"WARNING: {warning}")

    def _s3_loss(self) -> str | None:
        """Why the S3 snapshot is not the state moto had when it stopped (None: `down` saved it)."""
        if self._pid_file("moto").exists():  # `down` removes it; still there: moto stopped some other way
            return "moto stopped without `make down` (killed, crashed, or the machine rebooted)"
        failed = self.s3_snapshot / "snapshot-failed"
        if failed.exists():
            return f"the last `make down` could not save S3 ({failed.read_text().strip()})"
        return None

    def _restore_s3(self, env: dict[str, str], loss: str | None) -> dict | None:
        """Into a moto server just started: the snapshot's buckets and objects, before any notification exists."""
        from devstack.s3_snapshot import read_manifest, restore_objects

        manifest = read_manifest(self.s3_snapshot)
        if manifest is None:
            if loss:
                self._say(f"WARNING: S3 starts empty: {loss}, and there is no snapshot to restore")
            return None
        report = restore_objects(env["AWS_ENDPOINT_URL"], REGION, self.s3_snapshot, manifest)
        self._say(
            f"restored S3 as `make down` saved it at {manifest['taken_at']}: {report.objects} objects "
            f"({report.bytes / 1e6:.1f} MB) in {report.buckets} buckets, same ETags ({report.seconds:.1f} s)"
        )
        if loss:
            self._say(f"WARNING: that snapshot is older than S3 was: {loss}; objects written after it are lost")
        for warning in report.warnings:
            self._say(f"WARNING: {warning}")
        return manifest

    def _restore_messages(self, env: dict[str, str], manifest: dict | None) -> None:
        from devstack.s3_snapshot import restore_messages

        if manifest and (sent := restore_messages(env["AWS_ENDPOINT_URL"], REGION, manifest)):
            self._say(f"{sent} messages waiting on the queues when the stack stopped are queued again")

    def _check_ledger_against_s3(self, env: dict[str, str], loss: str | None) -> None:
        """The warehouse remembers what S3 forgot: say so, loudly, and how to get a consistent stack again."""
        from devstack.s3_snapshot import loaded_but_missing

        try:
            missing, examples = loaded_but_missing(
                env["WAREHOUSE_URL"], env["WAREHOUSE_SCHEMA"], env["AWS_ENDPOINT_URL"], REGION
            )
        except Exception as error:  # noqa: BLE001 - a check, not a reason to fail `make up`
            self._say(f"WARNING: could not compare the ledger with S3: {error}")
            return
        if not missing:
            if loss:
                self._say("every object the warehouse ledger shows as loaded is in S3")
            return
        why = loss or "`make down` saved no S3 snapshot (the stack was stopped by a version that did not save S3?)"
        self._say(f"WARNING: S3 WAS LOST: {why}.")
        self._say(
            f"WARNING: the warehouse ledger ({env['WAREHOUSE_SCHEMA']}.load_ledger) shows {missing} loaded "
            f"object(s) that are not in S3, e.g. {', '.join(examples)}: reruns and catch-up cannot read them."
        )
        self._say(
            "WARNING: upload them again, or run `make reset` (deletes the warehouse, Prefect's database and "
            "the S3 snapshot) and `make up` to start from empty."
        )

    # ---- PostgreSQL --------------------------------------------------------------------------
    def _pg_user(self) -> str | None:
        """None when we may run PostgreSQL ourselves; as root, the system user (created on demand)."""
        if os.geteuid() != 0:
            return None
        import stat

        with _quiet_pgserver_import():
            from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(PG_SYSTEM_USER)
        pg_bin = _pg_bin()
        ensure_prefix_permissions(pg_bin)
        readable, executable = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(pg_bin, readable | executable)
        ensure_folder_permissions(pg_bin.parent / "lib", readable)
        ensure_folder_permissions(pg_bin.parent / "share", readable | executable)
        ensure_prefix_permissions(self.root)
        self.root.chmod(self.root.stat().st_mode | 0o055)  # the postgres user must reach pgdata and logs
        return PG_SYSTEM_USER

    def _pg_run(self, tool: str, args: list[str], user: str | None, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([str(_pg_bin() / tool), *args], user=user, text=True, **kwargs)

    def _pg_owned(self, path: Path, user: str | None) -> Path:
        if user:
            shutil.chown(path, user, user)
        return path

    def _pg_running_port(self, user: str | None) -> int | None:
        """The port of a postmaster running on our data directory (line 4 of postmaster.pid)."""
        if not (self.pg_data / "PG_VERSION").exists():
            return None
        status = self._pg_run("pg_ctl", ["-D", str(self.pg_data), "status"], user, capture_output=True)
        if status.returncode != 0:
            return None
        try:
            return int((self.pg_data / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, IndexError, ValueError):
            return None

    def _initdb(self, user: str | None) -> None:
        self._pg_owned(self.pg_data, user)
        self.pg_data.chmod(0o700)
        done = self._pg_run(
            "initdb",
            ["-D", str(self.pg_data), "--auth=trust", "--encoding=utf8", "-U", "postgres"],
            user,
            capture_output=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        self._say(f"initialised PostgreSQL data directory {self.pg_data}")

    def _pg_ctl_start(self, port: int, user: str | None) -> None:
        socket_dir = self.run_dir / "pgsocket"  # unused by clients (TCP only) but postgres insists on one
        socket_dir.mkdir(parents=True, exist_ok=True)
        self._pg_owned(socket_dir, user)
        log = self.log_dir / "postgres.log"
        log.touch()
        self._pg_owned(log, user)
        # pg_ctl's own output goes to a file, not a pipe: a pipe held open by the postmaster hangs the caller.
        with (self.log_dir / "pg_ctl.log").open("ab") as out:
            started = self._pg_run(
                "pg_ctl",
                [
                    "-D",
                    str(self.pg_data),
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(log),
                    "-o",
                    f"-h 127.0.0.1 -p {port} -k {socket_dir}",
                    "start",
                ],
                user,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if started.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start{_log_tail(log)}{_log_tail(self.log_dir / 'pg_ctl.log', 10)}")

    def _ensure_database(self, port: int, name: str = "rentals") -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
                self._say(f"created database {name}")

    def _start_postgres(self, remembered: str | None) -> int:
        user = self._pg_user()
        self.pg_data.mkdir(parents=True, exist_ok=True)
        if not (self.pg_data / "PG_VERSION").exists():
            self._initdb(user)
        port = self._pg_running_port(user)
        if port is not None:
            self._say(f"PostgreSQL already running on 127.0.0.1:{port}")
        else:
            port = self._pick_port(remembered, "PostgreSQL")
            self._pg_ctl_start(port, user)
            self._say(f"PostgreSQL 16 on 127.0.0.1:{port} (data {self.pg_data})")
        self._write_pid("postgres", int((self.pg_data / "postmaster.pid").read_text().split()[0]))
        self._ensure_database(port)
        return port

    def _postgres_healthy(self, port: str | None) -> bool:
        return bool(port) and self._running_pid("postgres") is not None and _port_open(int(port))

    def _stop_postgres(self) -> bool:
        stopped = False
        if (self.pg_data / "PG_VERSION").exists():
            user = PG_SYSTEM_USER if os.geteuid() == 0 else None
            done = self._pg_run(
                "pg_ctl", ["-D", str(self.pg_data), "-m", "fast", "-w", "stop"], user, capture_output=True
            )
            stopped = done.returncode == 0
            if stopped:
                self._say("stopped PostgreSQL")
        # pg_ctl needs the data directory; if it vanished under a running server, stop it by pid.
        pid = self._running_pid("postgres")
        if pid is not None:
            _terminate(pid, signal.SIGINT, group=False)  # SIGINT is the postmaster's "fast shutdown"
            self._say(f"stopped PostgreSQL (pid {pid})")
            stopped = True
        self._pid_file("postgres").unlink(missing_ok=True)
        return stopped

    def _ensure_warehouse(self, env: dict[str, str]) -> None:
        try:
            from berlin_rentals.config import Settings
            from berlin_rentals.warehouse.access import Access
            from berlin_rentals.warehouse.ddl import create_warehouse
        except ImportError as error:
            self._say(
                f"WARNING: warehouse schema not created: berlin_rentals.warehouse.ddl.create_warehouse "
                f"is not importable ({error})"
            )
            return
        access = Access.from_settings(Settings.from_env(env))
        added = create_warehouse(env["WAREHOUSE_URL"], env["WAREHOUSE_SCHEMA"], access)
        if added:
            self._say(f"added columns the model gained: {', '.join(added)}")
        self._say(
            f"warehouse schema {access.schema} ready; BI views in {access.bi_schema}; roles "
            f"{access.dwh_role} (reads {access.schema}) and {access.bi_role} (reads {access.bi_schema} only)"
        )

    def _role_logins(self, port: int, env: dict[str, str], previous: dict[str, str]) -> dict[str, str]:
        """LOGIN and a password for the DWH and BI roles create_warehouse made; their URLs for the env file.

        A password is generated once and read back from the env file afterwards, so a shell or a
        client configured with it keeps working across `make down`/`make up`. pg_hba.conf makes these
        two roles give it (the stack's own superuser stays trusted on 127.0.0.1)."""
        import psycopg
        import sqlalchemy as sa
        from psycopg import sql

        urls = {}
        roles = {"WAREHOUSE_DWH_URL": env["WAREHOUSE_DWH_ROLE"], "WAREHOUSE_BI_URL": env["WAREHOUSE_BI_ROLE"]}
        self._require_passwords(list(roles.values()))
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="rentals", autocommit=True) as conn:
            for setting, role in roles.items():
                known = sa.make_url(previous[setting]) if previous.get(setting) else None
                password = known.password if known and known.username == role and known.password else None
                password = password or secrets.token_urlsafe(24)  # [A-Za-z0-9_-]: safe in a URL and the env file
                conn.execute(
                    sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
                )
                urls[setting] = f"postgresql+psycopg://{role}:{password}@127.0.0.1:{port}/rentals"
            conn.execute("SELECT pg_reload_conf()")
        return urls

    def _require_passwords(self, roles: list[str]) -> None:
        """Lines for these roles before initdb's `trust` ones (pg_hba.conf: the first match wins)."""
        hba = self.pg_data / "pg_hba.conf"
        begin, end = "# berlin-rentals roles: begin (make up)", "# berlin-rentals roles: end"
        kept, inside = [], False
        for line in hba.read_text().splitlines():
            inside = (inside or line == begin) and line != end
            if not inside and line != end:
                kept.append(line)
        ours = [begin, *(f"host all {role} 127.0.0.1/32 scram-sha-256" for role in roles), end]
        text = "\n".join([*ours, *kept]) + "\n"
        if hba.read_text() != text:
            hba.write_text(text)  # the file keeps its owner (the postgres system user, as root)

    # ---- Prefect server ----------------------------------------------------------------------
    def _prefect_server_env(self, port: int, auth_string: str) -> dict[str, str]:
        env = dict(os.environ)
        # The server must not point at another API, nor at a database someone exported for theirs.
        for key in ("PREFECT_API_URL", "PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL"):
            env.pop(key, None)
        env.update(
            {
                # Every API request but GET /health must carry it (the UI asks for it on its login page);
                # the client-side name too, for whatever in the server process calls its own API.
                "PREFECT_SERVER_API_AUTH_STRING": auth_string,
                "PREFECT_API_AUTH_STRING": auth_string,
                "PREFECT_HOME": str(self.root / "prefect"),  # its SQLite database lives here
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

    def _start_prefect(self, remembered: str | None, auth_string: str) -> int:
        if self._prefect_healthy(remembered):
            if self._prefect_locked(remembered):
                self._say(f"Prefect server already running on http://127.0.0.1:{remembered}/api")
                return int(remembered)
            self._say("the Prefect server answers without credentials: restarting it with basic auth")
        self._stop_pid("prefect")
        port = self._pick_port(remembered, "Prefect")
        (self.root / "prefect").mkdir(parents=True, exist_ok=True)
        args = [str(self.bin / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        self._spawn("prefect", args, self._prefect_server_env(port, auth_string))
        self._wait_healthy("prefect", lambda: _http_ok(f"http://127.0.0.1:{port}/api/health"), PREFECT_START_SECONDS)
        self._say(
            f"Prefect server on http://127.0.0.1:{port}/api (UI http://127.0.0.1:{port}; it asks for "
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
                port = self._start_moto(previous.get("LOCAL_MOTO_PORT"))
                env |= {"LOCAL_MOTO_PORT": str(port), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
                # A fresh moto is empty: objects back first, then the notification, so none is announced.
                manifest = self._restore_s3(env, loss) if moto_started else None
                self._ensure_aws_resources(env)
                self._restore_messages(env, manifest)
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
            if "WAREHOUSE_URL" in env:
                self._ensure_warehouse(env)
                if env.get("LOCAL_PG_PORT"):
                    env |= self._role_logins(int(env["LOCAL_PG_PORT"]), env, previous)
                if moto_started:
                    self._check_ledger_against_s3(env, loss)
            if "prefect" in self.services:
                if not previous.get("PREFECT_API_AUTH_STRING"):
                    # Started before the API had a password: they would keep calling it without one.
                    for name in ("bridge", "worker"):
                        self._stop_pid(name)
                port = self._start_prefect(previous.get("LOCAL_PREFECT_PORT"), env["PREFECT_API_AUTH_STRING"])
                env |= {
                    "LOCAL_PREFECT_PORT": str(port),
                    "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
                    "PREFECT_UI_URL": f"http://127.0.0.1:{port}",
                }
            if "receiver" in self.services:
                port = self._start_receiver(previous.get("LOCAL_RECEIVER_PORT"))
                env |= {"LOCAL_RECEIVER_PORT": str(port), "ETL_RECEIVER_URL": f"http://127.0.0.1:{port}/"}
            # Before the worker and the bridge: start_service() reads their settings from this file.
            self._write_env(env)
            if "prefect" in self.services and "s3" in self.services:
                self._ensure_results_block(env)
            if "prefect" in self.services and "worker" in self.services:
                self._deploy(env)
                self._start_worker(env)
            if "prefect" in self.services and "s3" in self.services and "bridge" in self.services:
                self._start_bridge(env)
        self._say(f"settings written to {self.env_file} (source it to use them from a shell)")
        return env

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
