"""The local stack's stand-in for Slack: an HTTP server that logs every request it receives, one JSON line each.

    python -m devstack.receiver --port 8765     # `make up` starts it; its log is .local/logs/receiver.log

The alerts' notification block (a Prefect CustomWebhookNotificationBlock) posts here locally, so what an
operator would have been told is on disk to read (and for the tests to assert on). GET answers 200 with
the number of requests received so far (the stack's health check); it is not logged.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A notification is a few kB; anything far larger is not one and is cut, not held in memory.
MAX_BODY_BYTES = 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    received = 0
    lock = threading.Lock()

    def _record(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY_BYTES)
        raw = self.rfile.read(length) if length else b""
        text = raw.decode("utf-8", errors="replace")
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = text
        line = json.dumps(
            {
                "received_at": datetime.now(UTC).isoformat(),
                "method": self.command,
                "path": self.path,
                "content_type": self.headers.get("Content-Type"),
                "body": body,
            },
            ensure_ascii=False,
        )
        with self.lock:
            type(self).received += 1
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        self._answer(204, b"")

    do_POST = do_PUT = do_PATCH = _record

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(200, json.dumps({"received": type(self).received}).encode())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the request line is in the JSON already
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), _Handler)
    print(json.dumps({"listening": f"http://{args.host}:{args.port}/"}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
