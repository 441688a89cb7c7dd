"""The HTTP client of one registry host, in layers.

- :mod:`~luff.registry.transport`: one request over a pooled, cancellable
  connection, with the host's TLS settings;
- :mod:`~luff.registry.ping`: ``GET /v2/``, at most once per host (and
  :class:`~luff.context.Context`), for the scheme and the auth challenge. It
  is sent only when needed: the first answer from a host stands for it when
  it shows a registry on the scheme tried first (a success, a 5xx, a 401
  with a challenge); a failed connection (where another scheme may serve) or
  another 4xx (a TLS port answering plain HTTP, a web server that is no
  registry, credentials asked for at ``/v2/`` only) pings, and the request
  is sent again when the ping changed the scheme or the credentials;
- :mod:`~luff.registry.authn`: the ``Authorization`` header for the scopes
  of a request (basic, or bearer tokens cached per scope set);
- :mod:`~luff.registry.retry`: which failures to try again, and the waits;
- this module: a request with all of the above, plus redirects (credentials
  never follow a redirect to another host) and bounded reads of the bodies
  it reads whole (:mod:`~luff.registry.body`);
- :mod:`~luff.registry.repository`: the ``/v2/<name>/...`` API of one
  repository, on top.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from luff import __version__, cancel
from luff.errors import LimitExceeded, NotFound, RegistryError, TransportError
from luff.model import jsonutil
from luff.record import Record
from luff.registry import auth as authmod
from luff.registry.authn import Authenticator, understood
from luff.registry.body import MAX_PAGE, MAX_SMALL, discard, read_capped, read_truncated
from luff.registry.ping import Ping, ping, schemes
from luff.registry.retry import RetryLater, RetryPolicy
from luff.registry.status import error_from
from luff.registry.transport import Body as RequestBody
from luff.registry.transport import TimedOut, url_join, url_netloc

if TYPE_CHECKING:
    from luff.context import Settings
    from luff.registry.connections import Headers, Response
    from luff.registry.transport import Transport

REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
#: Pages of one tag list, catalog or referrers listing, at most (each at most 4 MiB).
MAX_PAGES = 1000
#: Bytes of one whole listing, over all its pages, at most.
MAX_LISTING = 64 << 20
USER_AGENT = f"luff/{__version__}"


class Reply(Record):
    """A response read whole: status, headers and (bounded) body."""

    status: int
    headers: Headers
    data: bytes

    def __init__(
        self,
        status: int,
        headers: Headers,
        data: bytes,
    ) -> None:
        self.status = status
        self.headers = headers
        self.data = data


class RegistryClient:
    """One registry host: its scheme, credentials, tokens and retry policy."""

    def __init__(self, host: str, settings: Settings, transport: Transport) -> None:
        self.host = host
        self.settings = settings
        self.transport = transport
        self.policy = RetryPolicy.from_settings(settings)
        # Loopback and --insecure hosts: TLS is not verified and either scheme may serve.
        self.insecure = settings.is_insecure(host)
        self.auth = Authenticator(host, self.credentials, self._token_request)
        self._ping: Ping | None = None
        self._ping_lock = threading.Lock()
        self._schemes = schemes(host, self.insecure)
        #: The scheme the host was found to speak (by the ping or a first answer).
        self._scheme: str | None = None
        self._creds: authmod.Credentials | None = None
        self._creds_lock = threading.Lock()  # a credential helper runs once
        #: What this registry was found to do (``"referrers-api"``, ``"if-match"``), learnt once.
        self.capabilities: dict[str, bool] = {}

    # --- the host ------------------------------------------------------------
    def ping(self) -> Ping:
        """``GET /v2/`` the first time it is called; the same answer afterwards."""
        if self._ping is not None:
            return self._ping
        with self._ping_lock:
            if self._ping is None:
                p = ping(self.host, self._send_ping, self.insecure, self.policy, self._say)
                if p.challenge:
                    self.auth.learn(p.challenge)
                self._scheme = p.scheme
                self._ping = p
            return self._ping

    def _send_ping(self, url: str) -> Response:
        return self._send("GET", url, {"User-Agent": USER_AGENT}, None)

    @property
    def scheme(self) -> str:
        """``https`` or ``http``, as the host was found to speak (pinged if not known yet)."""
        return self._scheme or self.ping().scheme

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"

    def url(self, path: str) -> str:
        """Absolute URL for an API path or an (absolute or relative) Location.

        Before the host has answered, the scheme is the first one to try.
        """
        return url_join(f"{self._scheme or self._schemes[0]}://{self.host}/", path)

    def _pings_after(self, error: TransportError) -> bool:
        """Whether a failed first connection is worth a ping: another scheme may serve."""
        return (
            self._scheme is None
            and len(self._schemes) > 1
            and not isinstance(error, TimedOut)
            and error.message not in ("connection refused", "unknown host")
        )

    def _first_answer(self, resp: Response, url: str, sent: str | None) -> bool:
        """Take the first answer of a host for the ping's, or ping; True when the request
        should be sent again (the ping found another scheme, or credentials to send).

        A web page (HTML) is never taken for a registry's answer: the ping tells.
        """
        scheme = url.partition(":")[0]
        status = resp.status
        html = resp.headers.get("Content-Type", "").split(";")[0].strip().lower() == "text/html"
        if not html and (
            status < 400
            or self.policy.retry_status(status)
            or (status == 401 and understood(resp.headers.get("WWW-Authenticate", "")))
        ):
            self._scheme = scheme
            return False
        had = self.auth.scheme
        try:
            p = self.ping()
        except BaseException:
            discard(resp)
            raise
        return p.scheme != scheme or (sent is None and not had and self.auth.scheme != "")

    def credentials(self) -> authmod.Credentials:
        """Credentials for this host (looked up once)."""
        with self._creds_lock:
            if self._creds is None:
                lookup = self.settings.credentials or authmod.lookup
                self._creds = lookup(self.host)
            return self._creds

    def who(self) -> str:
        """The credentials in use, for messages."""
        c = self.credentials()
        return f"as {c.username!r}" if c.username else "(no credentials)"

    def check_login(self) -> None:
        """Ping, then prove the credentials: fetch a token, or send them to ``/v2/``."""
        self.ping()
        if self.auth.scheme == "bearer":
            self.auth.check_login()
        elif self.auth.scheme == "basic":
            self.call("GET", "/v2/", ok=(200,), what=self.host)

    # --- requests -------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        scopes: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
        body: RequestBody = None,
        retry: bool = True,
    ) -> Response:
        """Send a request with auth, redirects and retries; the response's body is unread.

        Error statuses are returned, not raised (see :meth:`check`); a
        retryable one only once the retries are spent. A *body* that is a
        stream is sent once: it is never retried or re-sent after a
        redirect. With ``retry=False`` nothing is retried.
        """
        scope_key = tuple(sorted(set(scopes)))
        url = self.url(path)
        home = self.host
        # Credentials go to this registry only, not to a host named in a Location or Link.
        same_host = url_netloc(url) == home
        replayable = body is None or isinstance(body, bytes)
        retry = retry and replayable
        attempts = redirects = 0
        reauthed = False
        while True:
            cancel.check()
            h = {"User-Agent": USER_AGENT, **(headers or {})}
            sent = self.auth.header(scope_key) if same_host else None
            if sent:
                h["Authorization"] = sent
            first = same_host and self._scheme is None
            try:
                resp = self._send(method, url, h, body)
            except TransportError as e:
                cancel.check()  # the connection was shut down on purpose
                if first and replayable and self._pings_after(e):
                    self.ping()  # raises when no scheme answers
                    url = self.url(path)
                    continue
                attempts += 1
                if retry and e.retryable:
                    if attempts < self.policy.max_attempts:
                        self.policy.sleep(attempts, None, self._say, self.host)
                        continue
                    e.retryable = False  # the retries are spent
                raise
            if first and self._first_answer(resp, url, sent) and replayable:
                discard(resp)
                url = self.url(path)
                continue
            if resp.status == 401 and same_host and not reauthed:
                reauthed = True
                if self.auth.challenged(resp.headers.get("WWW-Authenticate", ""), scope_key, sent):
                    discard(resp)
                    if replayable:
                        continue
                    raise RetryLater(
                        "the registry asked for new credentials while a stream was sent",
                        401,
                        where=self.host,
                    )
                return resp
            if resp.status in REDIRECT_STATUS and resp.headers.get("Location"):
                discard(resp)
                new = url_join(url, resp.headers["Location"])
                if resp.status != 303 and not replayable:
                    raise RegistryError(
                        f"{method} redirected ({resp.status}) to {new}; "
                        "a streamed body cannot be sent again",
                        resp.status,
                        where=self.host,
                    )
                if url_netloc(new) != home:
                    same_host = False  # never send our credentials to another host
                url = new
                if resp.status == 303:
                    method, body = "GET", None
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise TransportError("too many redirects", retryable=False, where=self.host)
                continue
            if retry and self.policy.retry_status(resp.status):
                attempts += 1
                if attempts < self.policy.max_attempts:
                    retry_after = resp.headers.get("Retry-After")
                    discard(resp)
                    self.policy.sleep(attempts, retry_after, self._say, self.host)
                    continue
            return resp

    def call(
        self,
        method: str,
        path: str,
        *,
        scopes: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        ok: Iterable[int] = (200,),
        what: str = "",
        cap: int = MAX_SMALL,
        body_name: str = "response",
        not_found: str = "",
    ) -> Reply:
        """A request whose answer is read whole (at most *cap* bytes, else LimitExceeded).

        A status outside *ok* raises the matching luff error, located at
        *what* (default: the host; a 404 says *not_found* when given). A body
        cut off while it is read is asked for again, as a failed request is.
        """
        what = what or self.host
        ok = tuple(ok)
        attempts = 0
        while True:
            attempts += 1
            resp = self.request(method, path, scopes=scopes, headers=headers, body=body)
            if resp.status == 404 and not_found and 404 not in ok:
                discard(resp)
                raise NotFound(not_found, where=what)
            self.check(resp, ok, what)
            if method == "HEAD":
                discard(resp)
                return Reply(resp.status, resp.headers, b"")
            try:
                data = read_capped(resp, cap, body_name, what)
            except TransportError as e:
                cancel.check()
                if e.retryable and attempts < self.policy.max_attempts:
                    self._say(f"{what}: {e}")
                    self.policy.sleep(attempts, None, self._say, self.host)
                    continue
                e.retryable = False
                raise
            return Reply(resp.status, resp.headers, data)

    def check(
        self,
        resp: Response,
        ok: Iterable[int],
        what: str,
        *,
        retried: bool = True,
    ) -> Response:
        """Raise the luff error for *resp* unless its status is one of *ok*.

        *retried* is False for a request the client could not retry (a
        streamed body): the error then says that a retry may help.
        """
        if resp.status in ok:
            return resp
        body = read_truncated(resp)
        raise error_from(resp.status, resp.headers, body, what, self.who(), retried=retried)

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], body: RequestBody
    ) -> Response:
        # --insecure (or loopback) covers the host named, not a token realm or a
        # redirect's host elsewhere: those are verified unless they are covered too.
        netloc = url_netloc(url)
        insecure = self.insecure if netloc == self.host else self.settings.is_insecure(netloc)
        return self.transport.send(
            method, url, headers, body, stream=True, host=self.host, verify=not insecure
        )

    def _say(self, message: str) -> None:
        self.settings.say(message)

    def _token_request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> tuple[int, bytes, str]:
        """One request to the token realm (retried as registry requests are)."""
        h = {"User-Agent": USER_AGENT, **headers}
        attempts = 0
        while True:
            attempts += 1
            cancel.check()
            try:
                resp = self._send(method, url, h, body)
                if self.policy.retry_status(resp.status) and attempts < self.policy.max_attempts:
                    retry_after = resp.headers.get("Retry-After")
                    discard(resp)
                    self.policy.sleep(attempts, retry_after, self._say, self.host)
                    continue
                if resp.status != 200:
                    data = read_truncated(resp)
                    return (
                        resp.status,
                        data,
                        error_from(resp.status, resp.headers, data, "").message,
                    )
                return 200, read_capped(resp, MAX_SMALL, "token response", self.host), ""
            except TransportError as e:
                cancel.check()
                if not e.retryable or attempts >= self.policy.max_attempts:
                    raise
                self.policy.sleep(attempts, None, self._say, self.host)

    # --- listings -----------------------------------------------------------
    def pages(self, path: str, scopes: Iterable[str], what: str) -> Iterator[tuple[Any, Headers]]:
        """The JSON objects (and headers) of a listing whose pages are linked with
        ``Link: <…>; rel="next"``.

        Stops with an error on a link back to a page already read, and after
        :data:`MAX_PAGES` pages or :data:`MAX_LISTING` bytes in all.
        """
        seen: set[str] = set()
        total = 0
        next_path: str | None = path
        while next_path:
            url = self.url(next_path)
            if url in seen:
                raise RegistryError(
                    f"the registry's pages link back to one already read ({next_path})",
                    where=what,
                )
            if len(seen) >= MAX_PAGES:
                raise LimitExceeded(f"the listing has more than {MAX_PAGES} pages", where=what)
            seen.add(url)
            reply = self.call(
                "GET", next_path, scopes=scopes, what=what, cap=MAX_PAGE, body_name="page"
            )
            total += len(reply.data)
            if total > MAX_LISTING:
                raise LimitExceeded(f"the listing is larger than {MAX_LISTING} bytes", where=what)
            try:
                obj = jsonutil.loads(reply.data, what="page", where=what)
            except ValueError:
                raise RegistryError(f"invalid JSON from {next_path}", where=what) from None
            yield obj, reply.headers
            next_path = _next_link(reply.headers.get("Link", ""))

    def paginate(self, path: str, key: str, scopes: Iterable[str], what: str = "") -> list[str]:
        """Collect the *key* lists of strings across the pages of a listing."""
        what = what or self.host
        out: list[str] = []
        for obj, _ in self.pages(path, scopes, what):
            items = obj.get(key) if isinstance(obj, dict) else ()
            if items is None:
                items = []
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise RegistryError(f"a page has no list of strings {key!r}", where=what)
            out.extend(items)
        return out

    def catalog(self, page_size: int = 1000) -> list[str]:
        """All repository names, following ``Link`` pagination."""
        return self.paginate(
            f"/v2/_catalog?n={page_size}", "repositories", ("registry:catalog:*",), self.host
        )


def _next_link(header: str) -> str | None:
    for part in header.split(","):
        if 'rel="next"' in part or "rel=next" in part:
            start, end = part.find("<"), part.find(">")
            if start != -1 and end > start:
                return part[start + 1 : end]
    return None
