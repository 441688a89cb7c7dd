"""luff.cancel: a cancel stops its own job's connections, at any stage, and no one else's."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from luff import cancel
from luff.context import Context
from luff.registry.auth import ANONYMOUS
from luff.testing import random_image
from tests.conftest import Reg


def test_a_cancel_spares_connections_another_job_took_since(registry: Reg) -> None:
    """Job A's connection goes back to the shared pool and job B takes it; cancelling A
    (say, one of its transfers failed) must not cut B's download."""
    ctx = Context(credentials=lambda h: ANONYMOUS, jobs=1)
    img = random_image("linux/amd64", size=8 << 20)
    img.push(f"{registry.host}/cancel/big:1", ctx)
    layer = img.manifest.layers[0]
    client = ctx.client(registry.host)
    a, b = cancel.CancelScope(), cancel.CancelScope()
    with cancel.entered(a):
        client.request("GET", "/v2/").data  # noqa: B018 - the connection goes back to the pool
    with cancel.entered(b):
        resp = client.request("GET", f"/v2/cancel/big/blobs/{layer.digest}")
        first = resp.read(1 << 16)
        a.cancel()
        rest = resp.read()
    assert len(first) + len(rest) == layer.size


def _cancelled_during_connect(url: str, verify: bool = True) -> list[BaseException]:
    """GET *url* in a cancel scope from another thread and cancel the scope 0.3 s in, while
    the connection is still being made; the read timeout is 30 s. Returns what was raised."""
    ctx = Context(credentials=lambda h: ANONYMOUS, timeout=30)
    scope = cancel.CancelScope()
    outcome: list[BaseException] = []

    def job() -> None:
        with cancel.entered(scope):
            try:
                ctx.transport.send("GET", url, {}, None, stream=False, host="h", verify=verify)
            except BaseException as e:
                outcome.append(e)

    t = threading.Thread(target=job)
    t.start()
    time.sleep(0.3)
    scope.cancel()
    t.join(20)
    assert not t.is_alive()  # it did not wait out the read timeout
    return outcome


def test_a_cancel_during_the_tls_handshake_is_not_missed(tmp_path: Path) -> None:
    """The socket does not exist yet while connecting, so there is nothing to shut down:
    the request must still end right after the handshake, not wait out the read timeout."""
    from tests.registries import self_signed

    cert, key = self_signed(tmp_path, ["127.0.0.1"])
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    done = threading.Event()

    def serve() -> None:  # a slow handshake, then silence
        conn, _ = listener.accept()
        time.sleep(1)
        try:
            with server_ctx.wrap_socket(conn, server_side=True):
                done.wait(60)
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    outcome = _cancelled_during_connect(f"https://127.0.0.1:{port}/v2/", verify=False)
    done.set()
    listener.close()
    assert len(outcome) == 1 and isinstance(outcome[0], cancel.Cancelled), outcome


def test_finished_pools_leave_their_parent_scope() -> None:
    from luff.pool import Pool

    parent = cancel.CancelScope()
    with cancel.entered(parent):
        for _ in range(50):
            with Pool(max_workers=2) as pool:
                list(pool.map(abs, range(4)))
    assert parent._children == set()
    with pytest.raises(cancel.Cancelled), cancel.entered(parent):
        parent.cancel()
        cancel.check()


def test_a_cancel_while_connecting_is_not_missed() -> None:
    """Plain HTTP connects inside the request: a cancel that lands while the TCP connect is
    still retrying its SYN (a full accept queue) must end the request right after it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):  # fill the accept queue: the next SYN is dropped and retried in 1 s
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    accepted: list[socket.socket] = []

    def accept_later() -> None:  # then accept, but never answer
        time.sleep(1)
        try:
            listener.settimeout(20)  # closed already when the cancel ended the request early
            while True:
                accepted.append(listener.accept()[0])
        except OSError:
            pass

    threading.Thread(target=accept_later, daemon=True).start()
    outcome = _cancelled_during_connect(f"http://127.0.0.1:{port}/v2/")
    listener.close()
    for sock in fillers + accepted:
        sock.close()
    assert len(outcome) == 1 and isinstance(outcome[0], cancel.Cancelled), outcome
