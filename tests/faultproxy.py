"""An HTTP proxy in front of a real registry that injects faults.

Rules match requests by method and path and then answer with a status (and
headers), drop the connection, or redirect to another base URL. Everything
else is forwarded to the upstream registry with the Host header kept, so
the registry's absolute Location headers point back at the proxy.

With :class:`RandomFaults`, any request may instead meet one of the faults
of :data:`FAULT_KINDS`, at a given rate, from a seeded generator.
"""

from __future__ import annotations

import collections
import http.client
import random
import re
import socket
import ssl
import threading
import time
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
    # "status", "drop", "redirect", "strip-query" (forward without the query), "drop-after"
    # (forward, then close without answering), "cut" (forward, answer half the body),
    # "delay" (forward after ``seconds``)
    action: str
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1  # how many matching requests it applies to (-1: always)
    target: str = ""  # base URL for "redirect"
    hits: int = 0
    body: bytes | None = None  # the body of a "status" answer (default: an error JSON)
    seconds: float = 0.0  # the wait of a "delay"


#: The random faults: error statuses, 429 with and without Retry-After, a connection
#: dropped before the request reaches the registry or after it did (the answer is
#: lost), and an answer whose body is cut off halfway.
FAULT_KINDS = ("500", "503", "429", "429-retry-after", "drop", "drop-after", "cut")


@dataclass
class RandomFaults:
    """Each request meets a fault with probability *rate*; the kind is drawn uniformly."""

    rate: float
    seed: int = 0
    kinds: tuple[str, ...] = FAULT_KINDS
    retry_after: str = "0"
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    requests: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def draw(self) -> str:
        """The fault for the next request ("" for none)."""
        self.requests += 1
        if self._rng.random() >= self.rate:
            return ""
        return self._rng.choice(self.kinds)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body_len: int


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up (as faults make them do) is not worth a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class FaultProxy:
    """Forwards to *upstream* ("host:port"); see :class:`Rule` for faults."""

    def __init__(
        self,
        upstream: str,
        bind_host: str = "127.0.0.1",
        upstream_auth: str = "",
        relative_location: bool = False,
        faults: RandomFaults | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.upstream = upstream
        self.faults = faults
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
            disable_nagle_algorithm = True  # headers and body go in separate writes

            def log_message(self, *a: Any) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self.httpd = _QuietServer((bind_host, self.port), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            # Handshakes in the handler threads: a client that fails one must not stop the rest.
            self.httpd.socket = tls.wrap_socket(
                self.httpd.socket, server_side=True, do_handshake_on_connect=False
            )
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

    @staticmethod
    def _drop(h: BaseHTTPRequestHandler) -> None:
        try:
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        h.close_connection = True

    @staticmethod
    def _status(
        h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes | None = None
    ) -> None:
        payload = body or b'{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}'
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        if "Content-Type" not in headers:
            h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(payload)

    def _random_fault(self, h: BaseHTTPRequestHandler) -> str:
        """Apply a random fault that needs no upstream answer; returns the kind drawn."""
        assert self.faults is not None
        with self._lock:
            kind = self.faults.draw()
        if kind in ("500", "503", "429", "429-retry-after"):
            status = int(kind[:3])
            headers = {"Retry-After": self.faults.retry_after} if kind == "429-retry-after" else {}
            self._status(h, status, headers)
        elif kind == "drop":
            self._drop(h)
        if kind and kind not in ("drop-after", "cut"):
            self._count(kind)
        return kind

    def _count(self, kind: str) -> None:
        if self.faults is None:
            return
        with self._lock:
            self.faults.counts[kind] += 1

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = self._read_body(h)
        with self._lock:
            self.seen.append(Seen(h.command, h.path, dict(h.headers.items()), len(body)))
        rule = self._match(h.command, h.path)
        late = ""  # a random fault applied once the registry has answered
        if rule is None and self.faults is not None:
            late = self._random_fault(h)
            if late not in ("", "drop-after", "cut"):
                return
        if rule is not None:
            if rule.action in ("drop-after", "cut"):
                late = rule.action
            if rule.action == "drop":
                self._drop(h)
                return
            if rule.action == "status":
                self._status(h, rule.status, rule.headers, rule.body)
                return
            if rule.action == "delay":
                time.sleep(rule.seconds)
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
        conn.close()
        if late == "cut" and (h.command == "HEAD" or len(data) < 2):
            late = "drop-after"  # no body to cut
        if late == "drop-after":
            self._count(late)
            self._drop(h)
            return
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
        if late == "cut":
            self._count(late)
            h.wfile.write(data[: len(data) // 2])
            self._drop(h)
            return
        if h.command != "HEAD":
            h.wfile.write(data)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
