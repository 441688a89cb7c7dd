"""Hostile peers for the tests: a real HTTP server on loopback that answers each path as
a test tells it to (endless bodies, gzip bombs, deep JSON, endless pages), a server that
accepts connections and never answers, and a running measure of a subprocess's memory."""

from __future__ import annotations

import functools
import json
import re
import socket
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[[BaseHTTPRequestHandler], None]
MiB = 1 << 20


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up (as faults make them do) is not worth a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class Hostile:
    """Answers a request with the handler of the last route whose pattern matches its
    whole path (query left out); ``/v2/`` answers ``{}`` unless told otherwise, anything
    else a 404."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {"/v2/": lambda h: send(h, 200, b"{}")}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        server = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in separate writes

            def log_message(self, *a: Any) -> None:
                pass

            def _any(self) -> None:
                server.requests.append((self.command, self.path, dict(self.headers.items())))
                path = self.path.partition("?")[0]
                for pattern, handler in reversed(server.routes.items()):
                    if re.fullmatch(pattern, path):
                        try:
                            handler(self)
                        except (BrokenPipeError, ConnectionResetError):
                            self.close_connection = True
                        return
                send(self, 404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}')

            do_GET = do_HEAD = do_POST = do_PUT = _any

        self.httpd = _QuietServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    def route(self, pattern: str, handler: Handler) -> None:
        self.routes[pattern] = handler

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    ctype: str = "application/json",
    headers: dict[str, str] | None = None,
) -> None:
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def endless(
    h: BaseHTTPRequestHandler,
    status: int = 200,
    prefix: bytes = b"",
    ctype: str = "application/json",
    headers: dict[str, str] | None = None,
    limit: int = 512 * MiB,
    chunked: bool = True,
) -> None:
    """A body that goes on for *limit* bytes (so a client that reads it all still ends),
    sent chunked (no length) or with a Content-Length."""
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    if chunked:
        h.send_header("Transfer-Encoding", "chunked")
    else:
        h.send_header("Content-Length", str(limit))
    h.end_headers()
    block = b"a" * MiB
    sent = 0
    first = prefix + block[len(prefix) :]
    while sent < limit:
        data = first if sent == 0 else block
        h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        sent += len(data)
    if chunked:
        h.wfile.write(b"0\r\n\r\n")
    h.close_connection = True


@functools.cache
def gzip_bomb(decoded: int = 512 * MiB) -> bytes:
    """Gzip of *decoded* zero bytes (about a thousandth of that on the wire)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zero = bytes(MiB)
    parts = [z.compress(zero) for _ in range(decoded // MiB)]
    parts.append(z.flush())
    return b"".join(parts)


def deep_json(levels: int = 100_000) -> bytes:
    """``[[[…]]]``: nested *levels* deep."""
    return b"[" * levels + b"]" * levels


def deep_manifest(levels: int = 100_000) -> bytes:
    """An image manifest whose annotations hide a value nested *levels* deep."""
    head = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}
    )[:-1].encode()
    return head + b', "x": ' + deep_json(levels) + b"}"


class Silent:
    """Accepts connections and never answers; counts the connections."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
        for c in self.connections:
            c.close()


MEASURE = """
import json, resource, sys
from luff.context import Context
from luff.registry.auth import ANONYMOUS
from luff.ops import basic
ctx = Context(credentials=lambda h: ANONYMOUS, backoff=0.01, max_attempts=2)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    {call}
    outcome = "no error"
except Exception as e:
    outcome = f"{{type(e).__name__}}: {{e}}"
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"error": outcome, "grew_kib": after - before}}))
"""


def measured(call: str, timeout: float = 120) -> tuple[str, int]:
    """Run *call* (Python, with ``ctx`` and ``basic`` at hand) in a fresh process;
    returns ``(error raised, growth of its peak memory in KiB)``."""
    p = subprocess.run(
        [sys.executable, "-c", MEASURE.format(call=call)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    return str(out["error"]), int(out["grew_kib"])
