"""HTTP client for the OCI distribution API: auth, retries, redirects, errors."""

from __future__ import annotations

import datetime
import email.utils
import json
import random
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from luff import __version__, cancel
from luff.errors import AuthError, NotFound, RegistryError, TransportError
from luff.registry import auth as authmod
from luff.registry.transport import Body, reason

if TYPE_CHECKING:
    from luff.context import Settings
    from luff.registry.transport import Transport

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = f"luff/{__version__}"


@dataclass
class _Token:
    value: str
    expires: float


def error_message(resp: urllib3.BaseHTTPResponse, what: str) -> tuple[str, str]:
    """``(code, message)`` from a distribution error body, else the HTTP reason."""
    try:
        raw = resp.data[:65536]
    except Exception:
        raw = b""
    try:
        obj = json.loads(raw)
        errs = obj.get("errors") if isinstance(obj, dict) else None
        if errs and isinstance(errs, list) and isinstance(errs[0], dict):
            e = errs[0]
            code = str(e.get("code", ""))
            msg = str(e.get("message", "")) or code.lower().replace("_", " ")
            return code, f"{code}: {msg}" if code else msg
    except (ValueError, AttributeError):
        pass
    reason = resp.reason or ""
    text = raw.decode("utf-8", "replace").strip().splitlines()[0][:200] if raw.strip() else ""
    return "", f"HTTP {resp.status} {reason}".strip() + (f": {text}" if text else "")


class RegistryClient:
    """One registry host: connection scheme, credentials, token cache, retries."""

    def __init__(self, host: str, settings: Settings, transport: Transport) -> None:
        self.host = host
        self.settings = settings
        self.transport = transport
        from luff.context import is_local_host

        # Loopback and --insecure hosts: TLS is not verified and either scheme may serve.
        self._insecure = settings.is_insecure(host)
        self.scheme = "http" if is_local_host(host) else "https"
        if self._insecure:
            # Skipping verification is what the user asked for; don't warn on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._answered = ""  # the scheme a response has come back on; it is kept from then on
        self._probed = False  # a TLS handshake was tried after plain HTTP failed
        self._lock = threading.Lock()
        self._token_lock = threading.Lock()
        self._auth_scheme = ""  # "", "basic" or "bearer"
        self._challenge: dict[str, str] = {}
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._creds: authmod.Credentials | None = None

    # --- plumbing ------------------------------------------------------
    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"

    def url(self, path: str) -> str:
        """Absolute URL for an API path or an (absolute or relative) Location."""
        return urllib.parse.urljoin(self.base + "/", path)

    def credentials(self) -> authmod.Credentials:
        """Credentials for this host (looked up once)."""
        if self._creds is None:
            lookup = self.settings.credentials or authmod.lookup
            self._creds = lookup(self.host)
        return self._creds

    def _auth_header(self, scopes: tuple[str, ...]) -> str | None:
        with self._lock:
            if self._auth_scheme == "basic":
                c = self.credentials()
                return c.basic() if c else None
            if self._auth_scheme == "bearer":
                tok = self._tokens.get(scopes)
                if tok and tok.expires > time.monotonic():
                    return f"Bearer {tok.value}"
                challenge = dict(self._challenge)
            else:
                return None
        # A known bearer realm: fetch the token for these scopes up front.
        with self._token_lock:
            with self._lock:
                tok = self._tokens.get(scopes)
            if not (tok and tok.expires > time.monotonic()):
                self._fetch_token(scopes, challenge)
                with self._lock:
                    tok = self._tokens.get(scopes)
        return f"Bearer {tok.value}" if tok else None

    def _authenticate(self, resp: urllib3.BaseHTTPResponse, scopes: tuple[str, ...]) -> bool:
        """React to a 401; True when a retry with new credentials makes sense."""
        header = resp.headers.get("WWW-Authenticate", "")
        challenges = authmod.parse_challenges(header)
        for scheme, params in challenges:
            if scheme.lower() == "bearer" and params.get("realm"):
                with self._lock:
                    self._auth_scheme = "bearer"
                    # The challenge's scope belongs to this request only.
                    self._challenge = {k: v for k, v in params.items() if k != "scope"}
                with self._token_lock:
                    self._fetch_token(scopes, params)
                return True
        for scheme, _ in challenges:
            if scheme.lower() == "basic":
                with self._lock:
                    self._auth_scheme = "basic"
                return bool(self.credentials())
        return False

    def _fetch_token(self, scopes: tuple[str, ...], params: Mapping[str, str]) -> None:
        realm = params["realm"]
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        all_scopes = list(scopes)
        if params.get("scope"):
            all_scopes += [s for s in params["scope"].split(" ") if s and s not in all_scopes]
        creds = self.credentials()
        headers = {"User-Agent": USER_AGENT}
        if creds.identity_token:
            form = dict(query)
            form.update(
                grant_type="refresh_token",
                refresh_token=creds.identity_token,
                client_id="luff",
                scope=" ".join(all_scopes),
            )
            resp = self._send_token_request(
                "POST",
                realm,
                {**headers, "Content-Type": "application/x-www-form-urlencoded"},
                urllib.parse.urlencode(form).encode(),
            )
        else:
            query += [("scope", s) for s in all_scopes]
            if creds:
                headers["Authorization"] = creds.basic()
            sep = "&" if "?" in realm else "?"
            url = realm + (sep + urllib.parse.urlencode(query) if query else "")
            resp = self._send_token_request("GET", url, headers, None)
        if resp.status in (401, 403):
            who = f"as {creds.username!r}" if creds else "anonymously"
            raise AuthError(f"{self.host}: token server refused to authenticate {who}")
        if resp.status != 200:
            _, msg = error_message(resp, "token")
            raise AuthError(f"{self.host}: token request failed: {msg}")
        try:
            obj = json.loads(resp.data)
            token = obj.get("token") or obj.get("access_token")
            expires = float(obj.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            raise AuthError(f"{self.host}: token server sent invalid JSON") from None
        if not token:
            raise AuthError(f"{self.host}: token server sent no token")
        with self._lock:
            self._tokens[scopes] = _Token(str(token), time.monotonic() + max(expires - 10, 5))

    def _send_token_request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> urllib3.BaseHTTPResponse:
        """A token server request, retried like registry requests (5xx, 429, resets)."""
        attempts = 0
        while True:
            attempts += 1
            cancel.check()
            try:
                resp = self._send(method, url, headers, body, False)
            except TransportError as e:
                cancel.check()
                if attempts >= self.settings.max_attempts or not e.retryable:
                    raise
                self._sleep(attempts, None)
                continue
            if resp.status in RETRY_STATUS and attempts < self.settings.max_attempts:
                self._sleep(attempts, resp.headers.get("Retry-After"))
                continue
            return resp

    def _may_switch(
        self,
        same_host: bool,
        switched: bool,
        url: str,
        scheme: str,
        error: TransportError | None = None,
    ) -> bool:
        """Whether a request on *scheme* that failed may move this registry to the other one:
        a loopback or --insecure host that has never answered on *scheme*, once per request."""
        return (
            self._insecure
            and same_host
            and not switched
            and url.startswith(scheme + ":")
            and self._answered != scheme
            and (error is None or error.retryable or scheme == "https")
        )

    def _switch(self, scheme: str, url: str) -> str:
        with self._lock:
            self.scheme = scheme
        return scheme + url[url.index(":") :]

    def request(
        self,
        method: str,
        path: str,
        *,
        scopes: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
        what: str = "",
    ) -> urllib3.BaseHTTPResponse:
        """Send a request with auth, redirects and retries; returns the final response.

        Error statuses are returned, not raised; see :meth:`check`.
        A body that is a stream is sent once (no retry after it was read).
        """
        scope_key = tuple(sorted(set(scopes)))
        url = self.url(path)
        hdrs = {"User-Agent": USER_AGENT, **(headers or {})}
        attempts = 0
        authed = False
        # Credentials go to this registry only, not to a host named in a Location or Link.
        same_host = urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(self.base).netloc
        switched = False
        replayable = body is None or isinstance(body, bytes)
        while True:
            attempts += 1
            cancel.check()
            if same_host and not url.startswith(self.scheme + ":"):
                # Another request moved this registry to the other scheme meanwhile.
                url = self.scheme + url[url.index(":") :]
            h = dict(hdrs)
            if same_host:
                a = self._auth_header(scope_key)
                if a:
                    h["Authorization"] = a
            try:
                resp = self._send(method, url, h, body, stream)
            except TransportError as e:
                cancel.check()  # the connection was shut down on purpose
                if self._may_switch(same_host, switched, url, "https", e):
                    # An --insecure host without TLS.
                    switched = True
                    attempts -= 1
                    url = self._switch("http", url)
                    continue
                if self._may_switch(same_host, switched, url, "http", e) and not self._probed:
                    # A loopback TLS server that hangs up on plain HTTP (Go's answer a 400).
                    self._probed = True
                    if _handshakes_tls(url):
                        switched = True
                        attempts -= 1
                        url = self._switch("https", url)
                        continue
                if replayable and attempts < self.settings.max_attempts and e.retryable:
                    self._sleep(attempts, None)
                    continue
                raise
            if (
                resp.status == 400
                and self._may_switch(same_host, switched, url, "http")
                and _speaks_tls(resp)
            ):
                # A loopback or --insecure registry that speaks TLS after all.
                switched = True
                attempts -= 1
                url = self._switch("https", url)
                continue
            if same_host:
                self._answered = url[: url.index(":")]
            if resp.status == 401 and same_host and not authed:
                _drain(resp)
                authed = True
                if self._authenticate(resp, scope_key):
                    attempts -= 1
                    if replayable:
                        continue
                    # The stream was consumed; let the caller start over.
                    raise _RetryStream()
                return resp
            if resp.status in REDIRECT_STATUS and resp.headers.get("Location"):
                _drain(resp)
                new = urllib.parse.urljoin(url, resp.headers["Location"])
                if resp.status != 303 and not replayable:
                    raise RegistryError(
                        f"{self.host}: {method} redirected ({resp.status}) to {new}; "
                        "a streamed body cannot be sent again",
                        resp.status,
                    )
                if urllib.parse.urlsplit(new).netloc != urllib.parse.urlsplit(self.base).netloc:
                    same_host = False  # never send our credentials to another host
                url = new
                if resp.status == 303:
                    method, body = "GET", None
                if attempts > 10:
                    raise TransportError(f"{self.host}: too many redirects")
                continue
            if resp.status in RETRY_STATUS and replayable and attempts < self.settings.max_attempts:
                retry_after = resp.headers.get("Retry-After")
                _drain(resp)
                self._sleep(attempts, retry_after)
                continue
            return resp

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], body: Body, stream: bool
    ) -> urllib3.BaseHTTPResponse:
        return self.transport.send(
            method, url, headers, body, stream=stream, host=self.host, verify=not self._insecure
        )

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.settings.backoff * (2 ** (attempt - 1))
        if retry_after:
            delay = max(delay, _retry_after_seconds(retry_after))
        delay = min(delay, 30.0) * (1 + random.random() * 0.1)
        self.settings.say(f"retrying {self.host} in {delay:.2f}s (attempt {attempt + 1})")
        cancel.sleep(delay)

    def check(
        self, resp: urllib3.BaseHTTPResponse, ok: Iterable[int], what: str
    ) -> urllib3.BaseHTTPResponse:
        """Raise the right luff error unless *resp* has one of the *ok* statuses."""
        if resp.status in ok:
            return resp
        code, msg = error_message(resp, what)
        if resp.status == 401:
            creds = self.credentials()
            who = f"as {creds.username!r}" if creds.username else "(no credentials)"
            raise AuthError(f"{what}: authentication required {who}: {msg}")
        if resp.status == 403:
            raise AuthError(f"{what}: access denied: {msg}")
        if resp.status == 404:
            raise NotFound(f"{what}: {msg}" if code else f"{what}: not found")
        raise RegistryError(f"{what}: {msg}", resp.status, code)

    def ping(self) -> None:
        """GET /v2/, authenticating if the registry asks; raises on failure."""
        resp = self.request("GET", "/v2/")
        if resp.status == 404:
            raise NotFound(f"{self.host}: not a registry (GET /v2/ answered 404)")
        self.check(resp, (200,), self.host)

    def check_login(self) -> None:
        """Ping, and on a token registry also fetch a token: wrong credentials fail here."""
        self.ping()
        with self._lock:
            bearer = self._auth_scheme == "bearer"
            challenge = dict(self._challenge)
        if bearer:
            # /v2/ may answer a token that asks for no scope; the token server must accept us.
            with self._token_lock:
                self._fetch_token((), challenge)

    def catalog(self, page_size: int = 1000) -> list[str]:
        """All repository names, following ``Link`` pagination."""
        return self.paginate(
            f"/v2/_catalog?n={page_size}", "repositories", ("registry:catalog:*",), self.host
        )

    def paginate(self, path: str, key: str, scopes: Iterable[str], what: str = "") -> list[str]:
        """Collect *key* lists across pages linked with ``Link: <…>; rel="next"``.

        *what* names the listing in errors (default: the host and path).
        """
        what = what or f"{self.host}{path}"
        out: list[str] = []
        seen: set[str] = set()
        next_path: str | None = path
        while next_path and next_path not in seen:
            seen.add(next_path)
            resp = self.check(self.request("GET", next_path, scopes=scopes), (200,), what)
            try:
                obj = json.loads(resp.data)
            except ValueError:
                raise RegistryError(f"{what}: invalid JSON from {next_path}") from None
            items = obj.get(key) if isinstance(obj, dict) else ()
            if items is None:
                items = []
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise RegistryError(f"{what}: {next_path} has no list of strings {key!r}")
            out.extend(items)
            next_path = _next_link(resp.headers.get("Link", ""))
        return out


def _handshakes_tls(url: str) -> bool:
    """True when the server of *url* completes a TLS handshake (unverified)."""
    import socket
    import ssl

    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, parts.port or 80), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except (OSError, ValueError):
        return False


def _speaks_tls(resp: urllib3.BaseHTTPResponse) -> bool:
    # Go's TLS servers answer plain HTTP with a bare HTTP/1.0 400 (body unread for HEAD).
    if resp.version == 10 and not resp.headers.get("Content-Type"):
        return True
    return b"HTTPS server" in (resp.data or b"")[:500]


class _RetryStream(Exception):
    """Authentication changed while a one-shot body was being sent."""


class ResponseStream:
    """A streamed response body; a connection failure while reading raises TransportError."""

    def __init__(self, resp: urllib3.BaseHTTPResponse, host: str) -> None:
        self._resp = resp
        self._host = host

    def read(self, n: int | None = -1) -> bytes:
        try:
            return self._resp.read(None if n is None or n < 0 else n)
        except Urllib3Error as e:
            cancel.check()  # the connection was shut down on purpose
            raise TransportError(
                f"{self._host}: connection lost while reading: {reason(e)}"
            ) from None

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Close the response; a connection with unread bytes is not reused."""
        self._resp.close()
        self._resp.release_conn()

    def __enter__(self) -> ResponseStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _retry_after_seconds(value: str) -> float:
    """Seconds from a ``Retry-After`` value: delay-seconds or an HTTP-date (0 if unreadable)."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


def _next_link(header: str) -> str | None:
    for part in header.split(","):
        if 'rel="next"' in part or "rel=next" in part:
            start, end = part.find("<"), part.find(">")
            if start != -1 and end > start:
                return part[start + 1 : end]
    return None


def _drain(resp: urllib3.BaseHTTPResponse) -> None:
    try:
        resp.drain_conn()
    except Exception:
        pass
    resp.release_conn()
