"""Process supervision for the local stack: pid files, background services, ports, the env file.

Every service runs in a session of its own (it outlives `make up` and stops as a group); a pid file
names it together with its start tick, so a pid reused after a reboot is never taken for ours.
`Supervisor` is the part of `LocalStack` (devstack/local_stack.py) that starts, watches and stops them.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO / ".local"
STOP_GRACE_SECONDS = 10


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


class Supervisor:
    """Pid files, spawning and stopping background services, settings on disk (a mixin of LocalStack)."""

    root: Path
    env_file: Path
    run_dir: Path
    log_dir: Path
    _phase: str

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
