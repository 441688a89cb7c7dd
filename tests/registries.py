"""Real registries for the tests: Debian's distribution registry, plain, htpasswd and token.

Also a small token server (the test side of distribution's ``auth: token``):
it signs RS256 JWTs with a self-signed certificate that the registry trusts
through ``rootcertbundle`` and sends in the ``x5c`` header.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REGISTRY_BIN = "/usr/bin/docker-registry"
USER = "alice"
PASSWORD = "s3cret-pass"
SERVICE = "luff-test-registry"
ISSUER = "luff-test-issuer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0) -> None:
    import ssl

    deadline = time.monotonic() + timeout
    unverified = ssl._create_unverified_context()
    while True:
        try:
            urllib.request.urlopen(url, timeout=2, context=unverified)
            return
        except urllib.error.HTTPError:
            return  # it answered (401 is fine)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues distribution-compatible bearer tokens; records the scopes asked for."""

    def __init__(self, workdir: Path, users: dict[str, str], anonymous_pull: tuple[str, ...] = ()):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.users = users
        self.anonymous_pull = anonymous_pull
        self.requests: list[dict[str, Any]] = []
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "luff-test-token")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path = workdir / "token-cert.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._der = self.cert.public_bytes(serialization.Encoding.DER)
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def sign(self, claims: dict[str, Any]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._der).decode()]}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(sig)}"

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query)
        scopes = q.get("scope", [])
        user = ""
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            raw = base64.b64decode(auth[6:]).decode()
            u, _, p = raw.partition(":")
            if self.users.get(u) != p:
                self.requests.append({"scopes": scopes, "user": u, "denied": True})
                h.send_response(401)
                h.send_header("Content-Type", "application/json")
                h.end_headers()
                h.wfile.write(b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}')
                return
            user = u
        self.requests.append({"scopes": scopes, "user": user, "service": q.get("service", [""])[0]})
        access = []
        for s in scopes:
            parts = s.split(":")
            if len(parts) < 3:
                continue
            typ, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
            if user:
                granted = actions
            else:
                granted = (
                    [a for a in actions if a == "pull"]
                    if name.startswith(self.anonymous_pull) and self.anonymous_pull
                    else []
                )
            if granted:
                access.append({"type": typ, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": _b64(os.urandom(12)),
            "access": access,
        }
        body = json.dumps({"token": self.sign(claims), "expires_in": 300}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def self_signed(workdir: Path, names: list[str]) -> tuple[Path, Path]:
    """A self-signed server certificate for *names* (IPs or DNS names)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    cp, kp = workdir / "tls-cert.pem", workdir / "tls-key.pem"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cp, kp


@dataclass
class DistributionRegistry:
    """A ``docker-registry`` process on a free loopback port."""

    workdir: Path
    auth: str = ""  # "", "htpasswd" or "token"
    tls: bool = False
    username: str = ""
    password: str = ""
    token_server: TokenServer | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> DistributionRegistry:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.workdir / "data")},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": self.host, "secret": "luff-test-secret"},
        }
        if self.auth == "htpasswd":
            import bcrypt

            self.username, self.password = USER, PASSWORD
            hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
            (self.workdir / "htpasswd").write_text(f"{USER}:{hashed}\n")
            cfg["auth"] = {
                "htpasswd": {"realm": "luff-test", "path": str(self.workdir / "htpasswd")}
            }
        elif self.auth == "token":
            self.username, self.password = USER, PASSWORD
            self.token_server = TokenServer(self.workdir, {USER: PASSWORD}, ("public/",))
            cfg["auth"] = {
                "token": {
                    "realm": self.token_server.realm,
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(self.token_server.cert_path),
                }
            }
        if self.tls:
            cert, key = self_signed(self.workdir, ["127.0.0.1", "localhost"])
            cfg["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
        conf = self.workdir / "config.yml"
        conf.write_text(json.dumps(cfg))  # JSON is YAML
        log = open(self.workdir / "registry.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(conf)], stdout=log, stderr=log)
        try:
            wait_http(f"{'https' if self.tls else 'http'}://{self.host}/v2/")
        except OSError:
            self.stop()
            raise RuntimeError(
                f"docker-registry did not start: {(self.workdir / 'registry.log').read_text()}"
            ) from None
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
        if self.token_server is not None:
            self.token_server.stop()
