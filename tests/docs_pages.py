"""What each documentation page's examples need before they run: registries and content.

One function per page, registered with ``@setup("docs/…/page.md")``. It starts
the registries the page names (``s.registry("localhost:5000")``: an embedded
registry whose host replaces that name in the page's commands) and pushes or
writes what the page's first command expects to find. Pages without a
set-up run with no registry.

Content is deterministic (:func:`image`): the same page gives the same digests
and sizes on every run, so the sizes a page shows can be compared too.

``python -m tests.docs_pages PAGE`` runs a page and prints what every example
printed (to write or update a page's expected output).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import socket
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from luff.model import mediatypes as mt
from luff.model.manifest import Manifest
from luff.model.platform import Platform
from luff.stores.memory import MemoryStore
from luff.testing import Image, Registry
from tests.docs_harness import ROOT, Page, fill, parse_blocks

# --- deterministic content --------------------------------------------------------------------


def _bytes(seed: str, size: int) -> bytes:
    out = bytearray()
    n = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{n}".encode()).digest()
        n += 1
    return bytes(out[:size])


def layer(seed: str, size: int = 2048, files: dict[str, bytes] | None = None) -> tuple[bytes, str]:
    """A gzipped tar (``(blob, diff_id)``) of pseudo-random bytes named by *seed*, or *files*."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (files or {f"data/{seed}.bin": _bytes(seed, size)}).items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, 6, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def image(
    platform: str,
    seed: str,
    *,
    layers: int = 1,
    size: int = 2048,
    media: str = "oci",
    store: MemoryStore | None = None,
    labels: dict[str, str] | None = None,
) -> Image:
    """An image of *platform* whose content depends only on the arguments."""
    plat = Platform.parse(platform)
    store = store if store is not None else MemoryStore()
    docker = media == "docker"
    descs, diff_ids = [], []
    for n in range(layers):
        blob, diff_id = layer(f"{seed}-{n}", size)
        descs.append(store.add_blob(blob, mt.DOCKER_LAYER_GZIP if docker else mt.OCI_LAYER_GZIP))
        diff_ids.append(diff_id)
    cfg: dict[str, object] = {
        "architecture": plat.architecture,
        "os": plat.os,
        "created": "2026-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            **({"Labels": labels} if labels else {}),
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if plat.variant:
        cfg["variant"] = plat.variant
    if plat.os_version:
        cfg["os.version"] = plat.os_version
    config = store.add_blob(
        json.dumps(cfg, indent=2).encode(), mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG
    )
    m = Manifest.from_dict(
        {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST,
            "config": config.to_dict(),
            "layers": [d.to_dict() for d in descs],
        }
    )
    store.push_manifest(m)
    return Image(m.descriptor(platform=plat), m, store)


def index(platforms: list[str], seed: str, *, layers: int = 1, size: int = 2048) -> Image:
    """An OCI index of one :func:`image` per platform."""
    store = MemoryStore()
    children = [image(p, f"{seed}-{p}", layers=layers, size=size, store=store) for p in platforms]
    m = Manifest.from_dict(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [c.descriptor.to_dict() for c in children],
        }
    )
    store.push_manifest(m)
    return Image(m.descriptor(), m, store, children)


def index_of(children: list[Image], *, attest: int | None = None) -> Image:
    """An OCI index over *children* (sharing one store), with a BuildKit attestation of
    ``children[attest]`` when given."""
    store = children[0].store
    entries = [c.descriptor.to_dict() for c in children]
    if attest is not None:
        subject = children[attest]
        att = image("unknown/unknown", f"att-{subject.digest.hex[:8]}", store=store)
        entries.append(
            att.descriptor.with_(
                annotations={
                    mt.REFERENCE_TYPE: "attestation-manifest",
                    mt.REFERENCE_DIGEST: str(subject.digest),
                }
            ).to_dict()
        )
        children = [*children, att]
    m = Manifest.from_dict({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries})
    store.push_manifest(m)
    return Image(m.descriptor(), m, store, children)


# --- set-ups ----------------------------------------------------------------------------------


class Setup:
    """What a set-up function works with: the page being run, and its registries."""

    def __init__(self, page: Page, stack: ExitStack) -> None:
        self.page = page
        self.stack = stack

    @property
    def dir(self) -> Path:
        return self.page.workdir

    def registry(self, name: str, **kw: object) -> Registry:
        """Start an embedded registry that stands for *name* on the page."""
        reg = self.stack.enter_context(Registry(**kw))  # type: ignore[arg-type]
        self.page.names[name] = reg.host
        return reg

    def port(self, name: str) -> str:
        """A free loopback port for a registry the page itself starts as *name*."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            host = f"127.0.0.1:{s.getsockname()[1]}"
        self.page.names[name] = host
        return host

    def push(self, img: Image, ref: str, reg: Registry | None = None) -> None:
        """Push *img* to *ref*, written with the names the page shows."""
        img.push(self.page.to_real(ref), reg.context() if reg else None)

    def file(self, path: str, data: str | bytes) -> Path:
        p = self.dir / path
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            p.write_text(data)
        else:
            p.write_bytes(data)
        return p


SetupFn = Callable[[Setup], None]
SETUPS: dict[str, SetupFn] = {}


def setup(*paths: str) -> Callable[[SetupFn], SetupFn]:
    def register(fn: SetupFn) -> SetupFn:
        for p in paths:
            SETUPS[p] = fn
        return fn

    return register


@contextmanager
def prepared(path: str, workdir: Path, *, record: bool = False) -> Iterator[Page]:
    """The page *path*, its set-up done, in *workdir*; registries stop on exit."""
    page = Page(path, workdir, record=record)
    with ExitStack() as stack:
        fn = SETUPS.get(path)
        if fn is not None:
            fn(Setup(page, stack))
        yield page


def run_page(path: str, workdir: Path, *, record: bool = False) -> Page:
    """Run every example of *path*; raises ExampleFailed (unless *record*)."""
    blocks = parse_blocks(path, (ROOT / path).read_text())
    with prepared(path, workdir, record=record) as page:
        page.run(blocks)
    return page


# --- the pages' set-ups -------------------------------------------------------------------------


@setup("README.md")
def _readme(s: Setup) -> None:
    from tests.images import sbom

    _release(s)
    s.registry("ci-s390x.internal:5000")
    s.registry("mirror.example.com")
    for arch, host in (("amd64", "ci-x86"), ("arm64", "ci-arm"), ("s390x", "ci-s390x")):
        img = image(f"linux/{arch}", f"readme-{arch}")
        s.push(img, f"{host}.internal:5000/app:2.0")
        s.push(
            sbom(img, seed=len(arch)),
            f"{host}.internal:5000/app@{sbom(img, seed=len(arch)).digest}",
        )
    s.file(
        "corp-bundle.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB (a CA of yours)\n-----END CERTIFICATE-----\n",
    )
    s.file("signature.json", '{"signed": "by the release key"}\n')


@setup("docs/tutorials/multi-platform-release.md", "docs/index.md")
def _release(s: Setup) -> None:
    s.registry("ci-x86.internal:5000")
    s.registry("ci-arm.internal:5000")
    s.registry("registry.example.com")
    s.push(image("linux/amd64", "app-amd64", layers=2), "ci-x86.internal:5000/app:1.4")
    s.push(image("linux/amd64", "app-amd64-fix", layers=2), "ci-x86.internal:5000/app:1.4-fix")
    s.push(image("linux/arm64", "app-arm64", layers=2), "ci-arm.internal:5000/app:1.4")
    s.push(image("linux/s390x", "app-s390x", layers=2), f"oci-archive:{s.dir}/app-s390x.tar")


@setup("docs/tutorials/air-gap.md")
def _air_gap(s: Setup) -> None:
    s.registry("registry.example.com")
    s.registry("registry.airgap.internal:5000")
    s.push(
        index(["linux/amd64", "linux/arm64"], "app", layers=2), "registry.example.com/acme/app:1.4"
    )
    s.push(image("linux/amd64", "tools"), "registry.example.com/acme/tools:2")
    s.page.names["/tmp/inside"] = str(s.dir / "inside")
    (s.dir / "inside").mkdir()


@setup("docs/how-to/filter-platforms.md")
def _filter(s: Setup) -> None:
    s.registry("registry.example.com")
    st = MemoryStore()
    kids = [
        image(p, f"app-{p}", store=st)
        for p in ("linux/amd64", "linux/arm64", "linux/arm/v7", "windows/amd64:10.0.17763.1234")
    ]
    s.push(index_of(kids, attest=0), "registry.example.com/acme/app:1.4")


@setup("docs/how-to/override-platform.md", "docs/how-to/edit-with-jq.md")
def _override(s: Setup) -> None:
    s.registry("registry.example.com")
    s.push(image("linux/amd64", "app-amd64"), "registry.example.com/acme/app-amd64:1")
    s.push(image("linux/arm", "app-armv6"), "registry.example.com/acme/app-armv6:1")
    s.push(image("linux/arm", "app-arm"), "registry.example.com/acme/app-arm:1")
    s.push(image("windows/amd64", "app-win"), "registry.example.com/acme/app-win:1")
    st = MemoryStore()
    kids = [
        image(p, f"multi-{p}", store=st) for p in ("linux/amd64", "linux/arm64", "windows/amd64")
    ]
    s.push(index_of(kids), "registry.example.com/acme/multi:1")


@setup("docs/how-to/embedded-registry.md")
def _embedded(s: Setup) -> None:
    for name in ("127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:5443"):
        s.port(name)
    image("linux/amd64", "app").push(f"oci:{s.dir}/app:1.0")


@setup("docs/how-to/private-ca-credentials.md")
def _private_ca(s: Setup) -> None:
    from tests.registries import self_signed

    cert, key = self_signed(s.dir, ["127.0.0.1", "localhost"])
    cert.rename(s.dir / "ca.pem")
    reg = s.registry(
        "registry.internal:5443",
        auth="basic",
        username="alice",
        password="s3cret",
        tls_cert=s.dir / "ca.pem",
        tls_key=key,
    )
    s.push(image("linux/amd64", "app"), "registry.internal:5443/app:1.0", reg)


def distribution(s: Setup, name: str) -> None:
    """A distribution registry (``docker-registry``: no referrers API) standing for *name*."""
    from tests.registries import DistributionRegistry

    reg = DistributionRegistry(s.dir / f".distribution-{len(s.page.names)}").start()
    s.stack.callback(reg.stop)
    s.page.names[name] = reg.host


def cosign_signature(subject: Image) -> tuple[Image, str]:
    """A cosign signature of *subject* in cosign's classic form, and its tag."""
    from tests.images import cosign_signature as sig

    return sig(subject), f"sha256-{subject.digest.hex}.sig"


@setup("docs/how-to/signatures-sboms.md")
def _signatures(s: Setup) -> None:
    s.registry("registry.example.com")
    distribution(s, "mirror.internal:5000")
    app = index(["linux/amd64", "linux/arm64"], "app")
    s.push(app, "registry.example.com/acme/app:1.4")
    signature, tag = cosign_signature(app)
    s.push(signature, f"registry.example.com/acme/app:{tag}")


@setup("docs/how-to/mutate.md")
def _mutate(s: Setup) -> None:
    s.registry("registry.example.com")
    s.registry("build.internal:5000")
    s.registry("ghcr.io")
    s.push(index(["linux/amd64", "linux/arm64"], "base"), "registry.example.com/acme/base:1")
    s.push(image("linux/amd64", "app-amd64"), "build.internal:5000/app-amd64:1")
    s.push(image("linux/arm64", "app-arm64"), "build.internal:5000/app-arm64:1")
    s.file(
        "corp-bundle.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB (a CA of yours)\n-----END CERTIFICATE-----\n",
    )


@setup("docs/how-to/many-writers.md")
def _many_writers(s: Setup) -> None:
    s.registry("registry.example.com")
    s.registry("ci.internal:5000")
    distribution(s, "dist.internal:5000")
    for arch in ("amd64", "arm64", "ppc64le", "s390x"):
        s.push(image(f"linux/{arch}", f"app-{arch}"), f"ci.internal:5000/app-{arch}:1")


@setup("docs/how-to/verify.md")
def _verify(s: Setup) -> None:
    s.registry("registry.example.com")
    app = image("linux/amd64", "verify-app", layers=2)
    s.push(app, "registry.example.com/acme/app:1.0")
    app.push(f"oci:{s.dir}/app:1.0")


@setup("docs/concepts/addresses.md")
def _addresses(s: Setup) -> None:
    s.registry("registry.example.com")
    s.push(image("linux/amd64", "addr-app"), "registry.example.com/acme/app:1.4")


@setup("docs/concepts/platforms.md")
def _platforms(s: Setup) -> None:
    s.registry("registry.example.com")
    st = MemoryStore()
    written = {  # entries' platforms exactly as the index writes them
        "linux/amd64": {"os": "linux", "architecture": "amd64"},
        "linux/arm64": {"os": "linux", "architecture": "aarch64"},
        "linux/arm/v6": {"os": "linux", "architecture": "arm", "variant": "v6"},
        "linux/arm/v7": {"os": "linux", "architecture": "arm", "variant": "v7"},
        "windows/amd64:10.0.17763.1234": {
            "os": "windows",
            "architecture": "amd64",
            "os.version": "10.0.17763.1234",
        },
    }
    entries = []
    for plat, as_written in written.items():
        d = image(plat, f"plat-{plat}", store=st).descriptor.to_dict()
        d["platform"] = as_written
        entries.append(d)
    m = Manifest.from_dict({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries})
    st.push_manifest(m)
    s.push(Image(m.descriptor(), m, st), "registry.example.com/acme/app:1")


@setup("docs/concepts/copy-plan.md")
def _copy_plan(s: Setup) -> None:
    s.registry("registry.example.com")
    s.registry("mirror.example.com")
    s.push(
        index(["linux/amd64", "linux/arm64"], "plan", layers=2), "registry.example.com/acme/app:1.4"
    )


@setup("docs/concepts/safety.md")
def _safety(s: Setup) -> None:
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>Not Found</body></html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    s.stack.callback(srv.server_close)
    s.stack.callback(srv.shutdown)
    s.page.names["web.example.com"] = f"127.0.0.1:{srv.server_address[1]}"


@setup("docs/reference/api/index.md")
def _api(s: Setup) -> None:
    s.registry("registry.lan:5000")
    s.registry("registry.example.com")
    s.push(index(["linux/amd64", "linux/arm64"], "api"), "registry.lan:5000/app:1.4")


@setup("docs/reference/index-sources.md")
def _index_sources(s: Setup) -> None:
    s.registry("registry.example.com")
    s.push(image("linux/amd64", "src-amd64"), "registry.example.com/acme/app-amd64:1.4")
    s.push(image("linux/arm", "src-armv6"), "registry.example.com/acme/app-armv6:1.4")
    s.push(
        index(["linux/amd64", "linux/arm64", "linux/s390x"], "src-base"),
        "registry.example.com/acme/base:3",
    )
    image("windows/amd64", "src-win").push(f"oci:{s.dir}/out/windows:1.4")


@setup("docs/reference/layouts.md")
def _layouts(s: Setup) -> None:
    s.registry("registry.example.com")
    s.push(
        index(["linux/amd64", "linux/arm64"], "app", layers=2), "registry.example.com/acme/app:1.4"
    )


def main(argv: list[str]) -> None:
    """Print what each example of the pages printed; with ``--fill``, write what differs
    into the pages (review the diff!)."""
    write = "--fill" in argv
    for arg in (a for a in argv if a != "--fill"):
        with tempfile.TemporaryDirectory() as tmp:
            pg = run_page(arg, Path(tmp), record=True)
            print("\n".join(pg.log))
            print(f"== {arg}: {pg.ran} run, {len(pg.fills)} differ, skipped: {pg.skipped}")
            if write and pg.fills:
                fill(ROOT / arg, pg.fills)


if __name__ == "__main__":
    main(sys.argv[1:])
