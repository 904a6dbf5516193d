"""Fault injection at real boundaries for tests/stack/test_faults.py and tests/e2e/test_faults.py: sockets, HTTP, processes, and the measure.

- `TcpProxy`: a TCP relay (the flow → PostgreSQL) that cuts every open connection on command.
- `HttpProxy`: an HTTP relay (boto3 → moto server) whose `hook` may answer a request itself (a 503),
  act before forwarding it (delete the object first), or stall it (never forward it).
- `warehouse_rows` / `lost_and_doubled`: the warehouse's rows as multisets, and how a faulted run's
  rows differ from a clean single load's (rows lost, rows doubled).
- `fresh_batch`: an hourly batch of listings with ids of its own (no other file touches its facts).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from berlin_rentals.synthetic import batch_name, read_sample_records, revise, with_listing_id, zip_lines

# ---- TCP ----------------------------------------------------------------------------------------


class TcpProxy:
    """127.0.0.1:<port> → upstream. `cut()` closes both ends of every connection open right now."""

    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[tuple[socket.socket, socket.socket]] = []
        self._orphans: list[socket.socket] = []  # server sides kept open after a half-open cut
        self.accepted = 0
        self.cuts = 0
        self._closed = False
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.append((client, server))
                self.accepted += 1
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                if any(s is o for o in self._orphans):
                    continue
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self, *, half_open: bool = False) -> int:
        """Drop every open connection; new ones still get through.

        By default both ends see the connection go (a reset). `half_open=True` drops only the client's
        end: the server's stays open and silent, as after a network partition the server has not
        noticed (no FIN, no RST reaches it).
        """
        with self._lock:
            pairs, self._open = self._open, []
            self.cuts += 1
            if half_open:
                self._orphans.extend(server for _, server in pairs)
        for client, server in pairs:
            for s in (client,) if half_open else (client, server):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        return len(pairs)

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.cut()
        with self._lock:
            orphans, self._orphans = self._orphans, []
        for s in orphans:  # shutdown first: close() alone sends no FIN while a pump thread blocks in recv()
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


# ---- HTTP ---------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def sqs_action(self) -> str | None:
        """SQS over JSON (X-Amz-Target: AmazonSQS.<Action>) or over the query protocol (Action=...)."""
        target = self.headers.get("x-amz-target", "")
        if target.startswith("AmazonSQS."):
            return target.split(".", 1)[1]
        if b"Action=" in self.body:
            return self.body.split(b"Action=", 1)[1].split(b"&", 1)[0].decode()
        return None


@dataclass
class Respond:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class Stall:
    """Hold the request and never forward it; the client's connection is closed on `release()`."""

    def __init__(self) -> None:
        self.released = threading.Event()

    def release(self) -> None:
        self.released.set()


Hook = Callable[[Request], "Respond | Stall | None"]


def s3_error(status: int, code: str, message: str) -> Respond:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return Respond(status, body.encode(), {"Content-Type": "application/xml"})


class _ProxyHandler(BaseHTTPRequestHandler):
    """A request to the proxy: recorded, then answered as the hook says or forwarded upstream."""

    proxy: HttpProxy  # set on the subclass each proxy makes
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, self._body())
        with self.proxy._lock:
            self.proxy.requests.append(request)
        action = self.proxy.hook(request) if self.proxy.hook else None
        if isinstance(action, Stall):
            action.released.wait(120)
            self.close_connection = True
            return
        if isinstance(action, Respond):
            self._reply(action.status, action.headers, action.body)
            return
        self._forward(request)

    def _forward(self, request: Request) -> None:
        upstream = http.client.HTTPConnection(*self.proxy.upstream, timeout=60)
        try:
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in ("transfer-encoding", "content-length", "connection")
            }
            headers["Content-Length"] = str(len(request.body))
            upstream.request(request.method, request.path, body=request.body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            self.send_response_only(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() in ("transfer-encoding", "connection", "content-length"):
                    continue
                self.send_header(key, value)
            length = response.getheader("Content-Length") if request.method == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if request.method != "HEAD":
                self.wfile.write(data)
        finally:
            upstream.close()

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response_only(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle


class HttpProxy:
    """127.0.0.1:<port> → an HTTP upstream (the moto server). Every request is recorded in `requests`."""

    def __init__(self, upstream_url: str, hook: Hook | None = None):
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname, parts.port or 80)
        self.hook = hook
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        handler = type("Handler", (_ProxyHandler,), {"proxy": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, name="http-proxy", daemon=True).start()

    def seen(self, predicate: Callable[[Request], bool]) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if predicate(r)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- the measure: rows lost and doubled ---------------------------------------------------------

# Columns that name the run or the moment, not the data: a rerun writes other values, rightly. And the S3
# version id: the same bytes put to a key 10 times are 10 versions of one ETag, and which of them a run
# names is its event's (the clean comparison load HEADs the newest); the ETag says the content is one.
LINEAGE_COLUMNS = {"flow_run_id", "loaded_at", "rejected_at", "source_version_id"}
PER_FILE_TABLES = ("fact_flats", "flat_snapshots", "rejected_records")
DIMENSION_KEYS = {
    "dim_city": "city_id",
    "dim_district": "district_id",
    "dim_address": "address_id",
    "dim_agency": "agency_id",
    "dim_agent": "agent_id",
}
DIMENSIONS = tuple(DIMENSION_KEYS)


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _columns(conn: sa.Connection, schema: str, table: str) -> list[str]:
    rows = (
        conn.execute(
            sa.text("""SELECT column_name FROM information_schema.columns
                                   WHERE table_schema = :s AND table_name = :t ORDER BY ordinal_position"""),
            {"s": schema, "t": table},
        )
        .scalars()
        .all()
    )
    return [c for c in rows if c not in LINEAGE_COLUMNS]


def warehouse_rows(engine: sa.Engine, schema: str, keys: list[str] | None = None) -> dict[str, Counter]:
    """Each table's rows as a multiset (lineage columns left out).

    With `keys`, the per-file tables keep only those source keys and the dimensions only their ids
    (a shared schema holds other tests' rows: there a dimension row is "there or not", by its key).
    """
    tables: dict[str, Counter] = {}
    with engine.connect() as conn:
        for table in PER_FILE_TABLES + DIMENSIONS:
            if keys is not None and table in DIMENSIONS:
                columns = [DIMENSION_KEYS[table]]
            else:
                columns = _columns(conn, schema, table)
            sql = f"SELECT {', '.join(columns)} FROM {schema}.{table}"
            params: dict[str, Any] = {}
            if keys is not None and table in PER_FILE_TABLES:
                sql += " WHERE source_key IN :keys"
                params["keys"] = list(keys)
            statement = sa.text(sql)
            if params:
                statement = statement.bindparams(sa.bindparam("keys", expanding=True))
            tables[table] = Counter(tuple(_freeze(v) for v in row) for row in conn.execute(statement, params))
    return tables


def dimension_ids(rows: dict[str, Counter]) -> dict[str, Counter]:
    """Full dimension rows reduced to their ids, to compare with a shared schema's."""
    out = dict(rows)
    for table in DIMENSIONS:
        out[table] = Counter({(row[0],): n for row, n in rows[table].items()})  # the id is the first column
    return out


def lost_and_doubled(expected: dict[str, Counter], got: dict[str, Counter]) -> dict[str, tuple[int, int]]:
    """Per table: (rows of the clean load missing, rows beyond the clean load's: doubled or stray)."""
    return {
        table: (sum((expected[table] - got[table]).values()), sum((got[table] - expected[table]).values()))
        for table in expected
    }


def report(name: str, diff: dict[str, tuple[int, int]], expected: dict[str, Counter]) -> tuple[int, int]:
    """Print the measure (pytest -s shows it; it is also in the captured output of a failure)."""
    lost = sum(d[0] for d in diff.values())
    doubled = sum(d[1] for d in diff.values())
    sizes = ", ".join(f"{t} {sum(expected[t].values())}" for t in expected)
    detail = ", ".join(f"{t} -{d[0]}/+{d[1]}" for t, d in diff.items() if d != (0, 0)) or "none"
    print(f"\n[fault] {name}: rows lost {lost}, rows doubled {doubled} (clean load: {sizes}; differences: {detail})")
    return lost, doubled


# ---- data ---------------------------------------------------------------------------------------

_TEMPLATES: list[dict] | None = None


def _shrink(value: Any, max_text: int) -> Any:
    if isinstance(value, str):
        return value[:max_text]
    if isinstance(value, list):
        return [_shrink(v, max_text) for v in value[:1]]
    if isinstance(value, dict):
        return {k: _shrink(v, max_text) for k, v in value.items()}
    return value


def _templates(max_text: int) -> list[dict]:
    """The sample's records with long texts and lists (attachments, pictures) cut: a big batch of them stays small on disk and in memory."""
    global _TEMPLATES
    if _TEMPLATES is None:
        trimmed = []
        for record in read_sample_records():
            data = {k: _shrink(v, max_text) for k, v in record["data"].items()}
            trimmed.append({"ok": record.get("ok", True), "data": data})
        _TEMPLATES = trimmed
    return _TEMPLATES


def fresh_batch(hour: datetime, *, first_id: int, listings: int, rent_factor: float = 1.0, bad_lines: int = 1) -> bytes:
    """`listings` listings with ids first_id.. (no other file shares them), modified at `hour`, and
    `bad_lines` cut-off JSON lines (rejected records: they must not be lost or doubled either)."""
    templates = _templates(40)
    lines = []
    for n in range(listings):
        fresh = with_listing_id(templates[n % len(templates)], first_id + n)
        record = revise(fresh, rent_factor=rent_factor * (1 + (n % 7) / 100), modified=hour)
        lines.append(json.dumps(record, ensure_ascii=False).encode())
    lines += [b'{"ok": true, "data": {"id": "%d"' % (first_id + n) for n in range(bad_lines)]
    return zip_lines(f"{batch_name(hour)}.json", lines)
