"""Review regressions for the registry client: broken bodies, redirects, bounded reads."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from luff.context import Context
from luff.copy import Copier
from luff.errors import TransportError
from luff.model import mediatypes as mt
from luff.model.descriptor import Descriptor
from luff.stores.layout import LayoutStore
from luff.stores.registry import RegistryStore

BLOB = bytes(range(256)) * 64
DESC = Descriptor.for_bytes(mt.OCI_LAYER_GZIP, BLOB)


class BlobServer:
    """Serves one blob; the first *truncate* GETs send half of it and close the connection."""

    def __init__(self, truncate: int) -> None:
        self.truncate = truncate
        self.gets = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                if not self.path.endswith(f"/blobs/{DESC.digest}"):
                    self.send_error(404)
                    return
                server.gets += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(BLOB)))
                self.end_headers()
                if server.gets <= server.truncate:
                    self.wfile.write(BLOB[: len(BLOB) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(BLOB)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def truncating() -> Iterator[BlobServer]:
    s = BlobServer(truncate=1)
    yield s
    s.stop()


def test_a_body_cut_short_is_a_transport_error(truncating: BlobServer, ctx: Context) -> None:
    src = RegistryStore(ctx.client(truncating.host), "cut/app")
    f = src.fetch(DESC)
    with pytest.raises(TransportError, match="connection lost while reading"):
        while f.read(1000):
            pass
    f.close()


def test_a_body_cut_short_is_fetched_again_into_a_layout(
    truncating: BlobServer, ctx: Context, tmp_path: Path
) -> None:
    src = RegistryStore(ctx.client(truncating.host), "cut/app")
    dst = LayoutStore.init(tmp_path / "dst")
    c = Copier(dst, ctx)
    c.add(src, DESC)
    c.execute(c.plan())
    assert truncating.gets == 2
    assert dst.blob_path(DESC.digest).read_bytes() == BLOB
