"""An HTTP proxy in front of a real registry that injects faults.

Rules match requests by method and path and then answer with a status (and
headers), drop the connection, or redirect to another base URL. Everything
else is forwarded to the upstream registry with the Host header kept, so
the registry's absolute Location headers point back at the proxy.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.registries import free_port

HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
}


@dataclass
class Rule:
    method: str
    path: str  # regex searched in the request path
    action: str  # "status", "drop", "redirect", "strip-query" (forward without the query)
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1  # how many matching requests it applies to (-1: always)
    target: str = ""  # base URL for "redirect"
    hits: int = 0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body_len: int


class FaultProxy:
    """Forwards to *upstream* ("host:port"); see :class:`Rule` for faults."""

    def __init__(
        self,
        upstream: str,
        bind_host: str = "127.0.0.1",
        upstream_auth: str = "",
        relative_location: bool = False,
    ) -> None:
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self.upstream_auth = upstream_auth
        self.relative_location = relative_location
        self.port = free_port()
        self.bind_host = bind_host
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self.httpd = ThreadingHTTPServer((bind_host, self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"{self.bind_host}:{self.port}"

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def _match(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for r in self.rules:
                if r.method in (method, "*") and re.search(r.path, path) and r.times != 0:
                    r.hits += 1
                    if r.times > 0:
                        r.times -= 1
                    return r
        return None

    def _read_body(self, h: BaseHTTPRequestHandler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    h.rfile.readline()
                    return bytes(out)
                out += h.rfile.read(size)
                h.rfile.readline()
        n = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(n) if n else b""

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = self._read_body(h)
        with self._lock:
            self.seen.append(Seen(h.command, h.path, dict(h.headers.items()), len(body)))
        rule = self._match(h.command, h.path)
        if rule is not None:
            if rule.action == "drop":
                try:
                    h.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                h.close_connection = True
                return
            if rule.action == "status":
                payload = b'{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}'
                h.send_response(rule.status)
                for k, v in rule.headers.items():
                    h.send_header(k, v)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", str(len(payload)))
                h.end_headers()
                if h.command != "HEAD":
                    h.wfile.write(payload)
                return
            if rule.action == "redirect":
                h.send_response(307)
                h.send_header("Location", rule.target.rstrip("/") + h.path)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
        path = h.path
        if rule is not None and rule.action == "strip-query":
            path = path.split("?", 1)[0]
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP}
        if self.upstream_auth:
            headers["Authorization"] = self.upstream_auth
        headers["Content-Length"] = str(len(body))
        send_body = body if body or h.command in ("PUT", "POST", "PATCH") else None
        conn.request(h.command, path, body=send_body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        h.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() in HOP or (k.lower() == "content-length" and h.command != "HEAD"):
                continue
            if k.lower() == "location" and self.relative_location:
                v = re.sub(r"^https?://[^/]+", "", v)
            h.send_header(k, v)
        if h.command != "HEAD":
            h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)
        conn.close()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
