"""An HTTP proxy in front of a real registry that holds one download half-way.

A GET whose path contains the held text is answered with its headers and
the first half of its body; the rest follows when the test calls
:meth:`HoldingProxy.release`. Tests use it to catch a luff process in the
middle of writing a blob (to kill it, or to run something else meanwhile).
Everything else is forwarded as it is, with the Host header kept.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.registries import free_port

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class HoldingProxy:
    """Forwards to *upstream* (``host:port``); holds the first GET whose path contains *hold*."""

    def __init__(self, upstream: str, hold: str, wait: float = 120.0) -> None:
        self.upstream = upstream
        self.hold = hold
        self.wait = wait  # a guard against a test that never releases, not a timing
        #: Set once the held response has sent half its body.
        self.reached = threading.Event()
        self._release = threading.Event()
        self._held = False
        self._lock = threading.Lock()
        self.port = free_port()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _any(self) -> None:
                proxy._forward(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def release(self) -> None:
        """Let the held response finish."""
        self._release.set()

    def _forward(self, h: BaseHTTPRequestHandler) -> None:
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n) if n else None
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
        conn.request(h.command, h.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        h.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in _HOP and k.lower() != "content-length":
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command == "HEAD":
            return
        with self._lock:
            hold = h.command == "GET" and self.hold in h.path and not self._held and data
            self._held = self._held or bool(hold)
        if not hold:
            h.wfile.write(data)
            return
        half = len(data) // 2
        h.wfile.write(data[:half])
        h.wfile.flush()
        self.reached.set()
        self._release.wait(self.wait)
        try:
            h.wfile.write(data[half:])
        except OSError:  # the client was killed meanwhile
            h.close_connection = True

    def stop(self) -> None:
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()
