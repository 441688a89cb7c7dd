"""Trusting a private CA as the ecosystem does: --ca-file, SSL_CERT_FILE, and the per-host
certs.d directories of containers and Docker (CAs, and client certificates for mutual TLS).

The registries are reached by this machine's name, not as loopback (luff does not verify
loopback registries), with certificates signed by a CA made here.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from luff.context import Context, is_local_host
from luff.errors import LuffError, TransportError, UsageError
from luff.ops import basic
from luff.registry.auth import ANONYMOUS
from luff.server import RegistryServer
from luff.testing import random_image
from tests.conftest import Reg
from tests.faultproxy import FaultProxy
from tests.test_cli import luff


def _name() -> tuple[str, str]:
    """``(name, address)``: a name of this machine that luff does not take for loopback."""
    name = socket.gethostname()
    try:
        addr = socket.gethostbyname(name)
    except OSError:
        return "", ""
    if not name or is_local_host(name):
        return "", ""
    return name, addr


NAME, ADDR = _name()
pytestmark = pytest.mark.skipif(not NAME, reason="this machine's name does not resolve")


@dataclass
class PKI:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _pki(d: Path) -> PKI:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def pem_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("luff test CA"))
        .issuer_name(name("luff test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, sans: list[x509.GeneralName], usage: x509.ObjectIdentifier) -> tuple:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(ca_key, hashes.SHA256()), key

    sans: list[x509.GeneralName] = [x509.DNSName(NAME)]
    try:
        sans.append(x509.IPAddress(ipaddress.ip_address(ADDR)))
    except ValueError:
        pass
    server, server_key = leaf(NAME, sans, ExtendedKeyUsageOID.SERVER_AUTH)
    client, client_key = leaf("luff test client", [], ExtendedKeyUsageOID.CLIENT_AUTH)
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "server.pem").write_bytes(server.public_bytes(pem))
    (d / "client.pem").write_bytes(client.public_bytes(pem))
    return PKI(
        d / "ca.pem",
        d / "server.pem",
        pem_key(server_key, d / "server.key"),
        d / "client.pem",
        pem_key(client_key, d / "client-key.pem"),
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return _pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_registry_by_name(
    pki: PKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """``(NAME:PORT, digest)``: the embedded registry over TLS, holding image ``app:1``."""
    data = tmp_path_factory.mktemp("tls-data")
    with RegistryServer(
        data, address=f"{ADDR}:0", tls_cert=pki.server_cert, tls_key=pki.server_key
    ) as srv:
        host = f"{NAME}:{srv.port}"
        ctx = Context(credentials=lambda h: ANONYMOUS, insecure={host})
        img = random_image(size=500)
        img.push(f"{host}/trust/app:1", ctx)
        ctx.close()
        yield host, str(img.digest)


def _ok(p: subprocess.CompletedProcess[str], digest: str) -> None:
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == digest


def _untrusted(p: subprocess.CompletedProcess[str]) -> None:
    assert p.returncode == 1
    assert len(p.stderr.splitlines()) == 1 and "certificate" in p.stderr, p.stderr


def test_ca_file(tls_registry_by_name: tuple[str, str], pki: PKI) -> None:
    host, digest = tls_registry_by_name
    _untrusted(luff("digest", f"{host}/trust/app:1"))
    _ok(luff("--ca-file", str(pki.ca), "digest", f"{host}/trust/app:1"), digest)
    _ok(luff("digest", "--ca-file", str(pki.ca), f"{host}/trust/app:1"), digest)
    ctx = Context(credentials=lambda h: ANONYMOUS, ca_file=str(pki.ca))
    assert str(basic.digest(f"{host}/trust/app:1", ctx=ctx).digest) == digest


def test_a_ca_file_that_is_not_one_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    for f in (bad, tmp_path / "missing.pem"):
        p = luff("--ca-file", str(f), "digest", "example.com/app:1")
        assert p.returncode == 2 and p.stderr.startswith("luff: error: --ca-file "), p.stderr
        assert len(p.stderr.splitlines()) == 1


def test_ssl_cert_file(tls_registry_by_name: tuple[str, str], pki: PKI) -> None:
    host, digest = tls_registry_by_name
    _ok(luff("digest", f"{host}/trust/app:1", env={"SSL_CERT_FILE": str(pki.ca)}), digest)


@pytest.mark.parametrize("layout", ["containers", "docker"])
def test_per_host_certs_directory(
    tls_registry_by_name: tuple[str, str], pki: PKI, tmp_path: Path, layout: str
) -> None:
    host, digest = tls_registry_by_name
    containers, docker = tmp_path / "containers-certs.d", tmp_path / "docker-certs.d"
    d = (containers if layout == "containers" else docker) / host
    d.mkdir(parents=True)
    (d / ("registry-ca.crt" if layout == "containers" else "ca.crt")).write_bytes(
        pki.ca.read_bytes()
    )
    (tmp_path / "elsewhere").mkdir()
    ctx = Context(credentials=lambda h: ANONYMOUS, certs_dirs=(str(containers), str(docker)))
    assert str(basic.digest(f"{host}/trust/app:1", ctx=ctx).digest) == digest
    other = Context(credentials=lambda h: ANONYMOUS, certs_dirs=(str(tmp_path / "elsewhere"),))
    with pytest.raises(TransportError, match="certificate"):
        basic.digest(f"{host}/trust/app:1", ctx=other)


@pytest.fixture
def mtls_proxy(registry: Reg, pki: PKI) -> Iterator[str]:
    """A TLS front for *registry* that requires a client certificate signed by the CA."""
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki.server_cert, pki.server_key)
    tls.verify_mode = ssl.CERT_REQUIRED
    tls.load_verify_locations(pki.ca)
    p = FaultProxy(registry.host, bind_host=ADDR, tls=tls)
    yield f"{NAME}:{p.port}"
    p.stop()


def test_mutual_tls_with_a_client_certificate(
    mtls_proxy: str, registry: Reg, pki: PKI, tmp_path: Path, ctx: Context
) -> None:
    img = random_image(size=500)
    img.push(f"{registry.host}/mtls/app:1", ctx)
    d = tmp_path / "certs.d" / mtls_proxy
    d.mkdir(parents=True)
    (d / "ca.crt").write_bytes(pki.ca.read_bytes())
    with_ca = Context(credentials=lambda h: ANONYMOUS, certs_dirs=(str(tmp_path / "certs.d"),))
    with pytest.raises(LuffError):
        basic.digest(f"{mtls_proxy}/mtls/app:1", ctx=with_ca)  # no client certificate
    (d / "client.cert").write_bytes(pki.client_cert.read_bytes())
    (d / "client.key").write_bytes(pki.client_key.read_bytes())
    mutual = Context(credentials=lambda h: ANONYMOUS, certs_dirs=(str(tmp_path / "certs.d"),))
    assert basic.digest(f"{mtls_proxy}/mtls/app:1", ctx=mutual).digest == img.digest


def test_an_unreadable_client_key_is_a_usage_error(
    tls_registry_by_name: tuple[str, str], pki: PKI, tmp_path: Path
) -> None:
    host, _ = tls_registry_by_name
    d = tmp_path / "certs.d" / host
    d.mkdir(parents=True)
    (d / "client.cert").write_bytes(pki.client_cert.read_bytes())
    (d / "client.key").write_text("garbage")
    ctx = Context(credentials=lambda h: ANONYMOUS, certs_dirs=(str(tmp_path / "certs.d"),))
    with pytest.raises(UsageError, match="client certificate"):
        basic.digest(f"{host}/trust/app:1", ctx=ctx)
