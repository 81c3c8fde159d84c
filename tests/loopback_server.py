"""A loopback HTTP server for download tests: serves a folder on 127.0.0.1.

It honours `Range: bytes=N-` (answering 206 with Content-Range) and injects
faults on demand, switched per test through `server.faults`:

- truncate_after / truncate_times: promise the full Content-Length but close
  the connection after `truncate_after` body bytes, for the next `truncate_times`
  requests;
- fail_times / fail_status: answer `fail_status` (503 by default) to the next
  `fail_times` requests;
- ignore_range: answer 200 with the whole body even when a Range is asked for;
- missing: request paths (e.g. "/a.bin") answered with 404 even if the file exists.

Every request is recorded in `server.requests` (method, path, Range header).

Use it through the `loopback_server` fixture; import it explicitly in a test module:
    from loopback_server import loopback_server  # noqa: F401  (pytest fixture)
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


@dataclass
class Faults:
    truncate_after: int | None = None
    truncate_times: int = 1
    fail_times: int = 0
    fail_status: int = 503
    ignore_range: bool = False
    missing: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None


class LoopbackServer:
    """A threaded http.server on an ephemeral port serving `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.faults = Faults()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next_fault(self) -> tuple[int | None, int | None]:
        """(status to fail with, byte count to truncate at) for the request now served."""
        with self._lock:
            if self.faults.fail_times > 0:
                self.faults.fail_times -= 1
                return self.faults.fail_status, None
            if self.faults.truncate_after is not None and self.faults.truncate_times > 0:
                self.faults.truncate_times -= 1
                return None, self.faults.truncate_after
        return None, None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output quiet

            def do_HEAD(self) -> None:
                self._serve(send_body=False)

            def do_GET(self) -> None:
                self._serve(send_body=True)

            def _serve(self, send_body: bool) -> None:
                range_header = self.headers.get("Range")
                with server._lock:
                    server.requests.append(Request(self.command, self.path, range_header))
                fail_status, truncate_at = server._next_fault()
                if fail_status is not None:
                    self._plain(fail_status, b"injected failure\n")
                    return
                relative = self.path.split("?", 1)[0].lstrip("/")
                path = (server.root / relative).resolve()
                inside = server.root.resolve() in path.parents
                if self.path in server.faults.missing or not inside or not path.is_file():
                    self._plain(404, b"not found\n")
                    return
                data = path.read_bytes()
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
                if match and not server.faults.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(body)))
                if truncate_at is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                if not send_body:
                    return
                if truncate_at is not None:
                    self.wfile.write(body[:truncate_at])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def _plain(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@pytest.fixture
def loopback_server(tmp_path: Path) -> Iterator[LoopbackServer]:
    """A running LoopbackServer serving the fresh folder `tmp_path / "served"`."""
    root = tmp_path / "served"
    root.mkdir()
    server = LoopbackServer(root).start()
    try:
        yield server
    finally:
        server.stop()
