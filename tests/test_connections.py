"""luff.registry.connections: luff's HTTP/1.1 client on the wire, against a stdlib server.

Bodies framed by Content-Length, chunked or the end of the connection;
kept-alive connections reused, and an idle one the server closed replaced;
a body cut off part-way gives what arrived, then the error.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from luff.context import Settings
from luff.errors import TransportError
from luff.registry.connections import WireError
from luff.registry.transport import Transport

Handler = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """Answers every request with *handler*; counts the connections it accepted."""

    def __init__(self, handler: Handler) -> None:
        self.connections = 0
        self.bodies: list[bytes] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                outer.connections += 1
                super().setup()

            def log_message(self, *a: Any) -> None:
                pass

            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding") == "chunked":
                    data = bytearray()
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                    outer.bodies.append(bytes(data))
                elif n:
                    outer.bodies.append(self.rfile.read(n))
                handler(self)

            do_GET = do_PUT = do_HEAD = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], Server]]:
    servers: list[Server] = []

    def start(handler: Handler) -> Server:
        servers.append(Server(handler))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def send(t: Transport, url: str, method: str = "GET", body: Any = None) -> Any:
    return t.send(method, url, {}, body, stream=True, host="test")


def test_bodies_by_length_by_chunks_and_to_the_end(serve: Callable[[Handler], Server]) -> None:
    def answer(h: BaseHTTPRequestHandler) -> None:
        kind = h.path.strip("/")
        h.send_response(200)
        if kind == "length":
            h.send_header("Content-Length", "11")
            h.end_headers()
            h.wfile.write(b"hello world")
        elif kind == "chunked":
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            h.wfile.write(b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n")
        else:
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(b"hello world")
            h.close_connection = True

    srv = serve(answer)
    t = Transport(Settings())
    for kind in ("length", "chunked", "close", "length", "chunked"):
        resp = send(t, f"{srv.url}/{kind}")
        assert resp.status == 200 and resp.read(4) + resp.read() == b"hello world", kind
        resp.release_conn()
    # One connection for the kept-alive answers, one more after the one that closed.
    assert srv.connections == 2


def test_an_idle_connection_the_server_closed_is_replaced(
    serve: Callable[[Handler], Server],
) -> None:
    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(204)
        h.end_headers()
        h.wfile.flush()
        h.connection.shutdown(socket.SHUT_RDWR)  # keep-alive promised, then closed
        h.close_connection = True

    srv = serve(answer)
    t = Transport(Settings())
    for _ in range(3):
        resp = send(t, srv.url + "/x")
        assert resp.status == 204
        resp.release_conn()
    assert srv.connections == 3


def test_request_bodies_sized_and_chunked(serve: Callable[[Handler], Server]) -> None:
    import io

    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(201)
        h.send_header("Content-Length", "0")
        h.end_headers()

    srv = serve(answer)
    t = Transport(Settings())
    data = bytes(range(256)) * 5000
    for body in (data, io.BytesIO(data), iter([data[:1000], b"", data[1000:]])):
        resp = t.send(
            "PUT",
            srv.url + "/up",
            {} if not isinstance(body, bytes) else {"Content-Length": str(len(data))},
            body,
            stream=False,
            host="test",
        )
        assert resp.status == 201
    assert srv.bodies == [data, data, data]


def test_a_body_cut_off_gives_what_arrived_then_the_error(
    serve: Callable[[Handler], Server],
) -> None:
    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(b"x" * 300)
        h.wfile.flush()
        h.connection.shutdown(socket.SHUT_RDWR)
        h.close_connection = True

    srv = serve(answer)
    resp = send(Transport(Settings()), srv.url + "/cut")
    assert resp.read(1000) == b"x" * 300
    with pytest.raises(WireError, match=r"connection closed early \(got 300 of 1000 bytes\)"):
        resp.read(1000)


def test_refused_and_silent_peers_are_transport_errors() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransportError, match="connection refused") as e:
        send(Transport(Settings()), f"http://127.0.0.1:{port}/")
    assert not e.value.retryable
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with pytest.raises(TransportError, match="timed out"):
            send(Transport(Settings(timeout=0.3)), url)
    finally:
        listener.close()
