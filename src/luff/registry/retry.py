"""When to try a request again, and how long to wait first.

One :class:`RetryPolicy` (from :class:`~luff.context.Settings`) is used by
the registry client for each request and by the copy engine for a whole
blob transfer (whose source stream the client cannot send twice):

- statuses 408, 429, 500, 502, 503 and 504 are retried;
- connection failures are retried, except a refused connection, an unknown
  host or a failed TLS verification (``TransportError.retryable``);
- attempt *n* waits ``backoff * 2**(n-1)`` seconds, or longer when the
  server's ``Retry-After`` (seconds or an HTTP date) says so, at most
  :attr:`RetryPolicy.max_delay`, plus up to 10 % jitter;
- the waits end early, with :class:`~luff.cancel.Cancelled`, when the job is
  cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from luff import cancel
from luff.errors import RegistryError, Side, TransportError
from luff.record import Record, setfields

if TYPE_CHECKING:
    from luff.context import Settings

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class RetryLater(RegistryError):
    """A status worth retrying (408, 429, 5xx), or a request to repeat with new credentials.

    ``retry_after`` is the server's ``Retry-After`` value ("" when none);
    ``exhausted`` is True when the client already spent the retry budget on it.
    """

    def __init__(
        self,
        message: str = "",
        status: int = 0,
        code: str = "",
        *,
        retry_after: str = "",
        exhausted: bool = False,
        op: str = "",
        where: str = "",
        digest: object = "",
        side: Side = "",
    ) -> None:
        super().__init__(message, status, code, op=op, where=where, digest=digest, side=side)
        self.retry_after = retry_after
        self.exhausted = exhausted


class RetryPolicy(Record, frozen=True):
    """``max_attempts`` tries in all, exponential backoff from ``backoff`` seconds."""

    max_attempts: int
    backoff: float
    max_delay: float

    def __init__(
        self,
        max_attempts: int = 5,
        backoff: float = 0.25,
        max_delay: float = 30.0,
    ) -> None:
        setfields(
            self,
            max_attempts=max_attempts,
            backoff=backoff,
            max_delay=max_delay,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(max(1, settings.max_attempts), max(0.0, settings.backoff))

    @staticmethod
    def retry_status(status: int) -> bool:
        """True for the statuses worth another try."""
        return status in RETRY_STATUS

    def should_retry(self, error: BaseException) -> bool:
        """True when *error* may go away if the whole operation is tried again."""
        if isinstance(error, TransportError):
            return error.retryable
        if isinstance(error, RetryLater):
            return not error.exhausted
        if isinstance(error, RegistryError):
            return error.status in RETRY_STATUS
        return False

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait after failed attempt number *attempt* (1-based)."""
        import random

        d = self.backoff * (2 ** (max(1, attempt) - 1))
        if retry_after:
            d = max(d, retry_after_seconds(retry_after))
        return float(min(d, self.max_delay) * (1 + random.random() * 0.1))

    def sleep(
        self,
        attempt: int,
        retry_after: str | None = None,
        say: Callable[[str], None] | None = None,
        what: str = "",
    ) -> None:
        """Wait before attempt *attempt* + 1 (cut short, with Cancelled, by a cancel)."""
        d = self.delay(attempt, retry_after)
        if say is not None:
            say(f"retrying {what} in {d:.2f}s (attempt {attempt + 1})")
        cancel.sleep(d)

    @staticmethod
    def retry_after_of(error: BaseException) -> str:
        """The ``Retry-After`` a failed request came with ("" when none)."""
        return error.retry_after if isinstance(error, RetryLater) else ""


def retry_after_seconds(value: str) -> float:
    """Seconds from a ``Retry-After`` value: delay-seconds or an HTTP-date (0 if unreadable)."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    import datetime
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())
