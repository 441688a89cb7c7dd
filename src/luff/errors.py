"""Exceptions raised by luff.

Every error that a user can cause (bad input, missing image, denied access)
derives from :class:`LuffError`; the CLI prints its message on one line.
"""

from __future__ import annotations


class LuffError(Exception):
    """Base class of all expected luff errors."""

    exit_code = 1


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
    """A manifest or index is malformed or of an unsupported type."""


class NotFound(LuffError):
    """A manifest, blob, tag or repository does not exist."""


class AuthError(LuffError):
    """Authentication failed or access was denied."""


class RegistryError(LuffError):
    """A registry answered with an error.

    ``code`` and ``detail`` come from the distribution error JSON when present.
    """

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class TransportError(LuffError):
    """A host could not be reached or the connection failed.

    ``retryable`` is False when trying again cannot help soon (connection
    refused, unknown host, TLS verification).
    """

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
