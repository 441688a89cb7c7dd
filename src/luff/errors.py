"""Exceptions raised by luff: values with fields, formatted only at the edge.

Every error a user can cause (bad input, missing image, denied access, a
broken peer) derives from :class:`LuffError`. Besides its ``message`` (what
went wrong, without saying where), an error carries:

- ``op``: what was being done (``"fetch manifest"``, ``"upload blob"``, ...);
- ``where``: the address or store it happened at (``localhost:5000/app``,
  ``oci:./out``);
- ``digest``: the content concerned, if any;
- ``side``: ``"source"`` or ``"target"`` when a copy was running;
- the cause, chained with ``raise ... from``.

Lower layers raise with what they know; callers that know more fill in the
fields that are still empty with :meth:`LuffError.located` (or the
:func:`located` context manager), so nothing is added by editing messages.
``str(error)`` gives the one line the CLI prints; the CLI picks the exit code
from the type (:attr:`LuffError.exit_code`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

Side = Literal["source", "target", ""]


class LuffError(Exception):
    """Base class of all expected luff errors."""

    exit_code = 1

    def __init__(
        self,
        message: str = "",
        *,
        op: str = "",
        where: object = "",
        digest: object = "",
        side: Side = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.op = op
        self.where = str(where) if where else ""
        self.digest = str(digest) if digest else ""
        self.side: Side = side

    def located(
        self,
        *,
        op: str = "",
        where: object = "",
        digest: object = "",
        side: Side = "",
    ) -> LuffError:
        """Fill in the fields that are still empty; returns this error (to re-raise)."""
        self.op = self.op or op
        self.where = self.where or (str(where) if where else "")
        if not self.digest and digest:
            self.digest = str(digest)
        self.side = self.side or side
        return self

    def __str__(self) -> str:
        head = self.where
        if self.digest and self.digest not in head and self.digest not in self.message:
            head = f"{head}@{self.digest}" if head else self.digest
        parts = [p for p in (head, self.op, self.message) if p]
        return ": ".join(parts)

    def to_dict(self) -> dict[str, object]:
        """The fields as JSON-able values (``type`` is the class name)."""
        out: dict[str, object] = {"type": type(self).__name__, "message": self.message}
        for k in ("op", "where", "digest", "side"):
            v = getattr(self, k)
            if v:
                out[k] = v
        return out


@contextmanager
def located(
    *, op: str = "", where: object = "", digest: object = "", side: Side = ""
) -> Iterator[None]:
    """Fill in empty fields of any :class:`LuffError` raised in the block."""
    try:
        yield
    except LuffError as e:
        e.located(op=op, where=where, digest=digest, side=side)
        raise


class UsageError(LuffError):
    """The caller asked for something that cannot be done as asked."""

    exit_code = 2


class InvalidReference(UsageError):
    """A reference or address does not follow the grammar."""


class InvalidPlatform(UsageError):
    """A platform string or JSON is malformed."""


class InvalidDigest(LuffError):
    """A digest string is malformed or uses an unsupported algorithm."""


class DigestMismatch(LuffError):
    """Content did not match the digest or size that described it."""


class InvalidManifest(LuffError):
    """A manifest, index or other structured content is malformed or unsupported."""


class LimitExceeded(InvalidManifest):
    """Content from a peer exceeds a bound luff keeps (size, depth, pages, count)."""


class NotFound(LuffError):
    """A manifest, blob, tag or repository does not exist."""


class AuthError(LuffError):
    """Authentication failed or access was denied."""


class RegistryError(LuffError):
    """A registry answered with an error.

    ``status`` is the HTTP status; ``code`` the distribution error code, when given.
    """

    def __init__(
        self,
        message: str = "",
        status: int = 0,
        code: str = "",
        *,
        op: str = "",
        where: object = "",
        digest: object = "",
        side: Side = "",
    ) -> None:
        super().__init__(message, op=op, where=where, digest=digest, side=side)
        self.status = status
        self.code = code

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        if self.status:
            out["status"] = self.status
        if self.code:
            out["code"] = self.code
        return out


class PreconditionFailed(RegistryError):
    """A conditional write lost: the tag no longer points where the writer read it."""


class TransportError(LuffError):
    """A host could not be reached or the connection failed.

    ``retryable`` is False when trying again cannot help soon (connection
    refused, unknown host, TLS verification).
    """

    def __init__(
        self,
        message: str = "",
        retryable: bool = True,
        *,
        op: str = "",
        where: object = "",
        digest: object = "",
        side: Side = "",
    ) -> None:
        super().__init__(message, op=op, where=where, digest=digest, side=side)
        self.retryable = retryable
