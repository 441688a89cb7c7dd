"""Opening the files of layouts and archives: regular files only, never a hang.

A FIFO where luff expects a file would block ``open()`` until some writer
comes, and a device would be read forever. Files are therefore opened with
``O_NONBLOCK`` (a FIFO opens at once), checked with ``fstat``, and refused
with :class:`UnsafePath` unless they are regular files. With
``follow=False`` a symbolic link is refused too (``O_NOFOLLOW``).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

from luff.errors import LimitExceeded, LuffError


class UnsafePath(LuffError):
    """A path is not what luff reads or writes there: a link out of a layout, a FIFO, a device."""


def kind_of(mode: int) -> str:
    """``"a FIFO"``, ``"a character device"``, ... for a file mode."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def not_regular(mode: int, name: str = "", where: object = "") -> UnsafePath:
    """The error for a file of *mode* (called *name*, if given) where a regular file belongs."""
    what = kind_of(mode)
    text = "is not a regular file" if what == "not a regular file" else f"is {what}"
    if what != "not a regular file":
        text += ", not a regular file"
    return UnsafePath(f"{name} {text}" if name else text, where=where)


def open_regular(
    path: str | os.PathLike[str], *, follow: bool = True, name: str = "", where: object = ""
) -> BinaryIO:
    """Open the regular file *path* for reading (buffered).

    Errors name the file *name* (e.g. ``index.json``) at *where* (e.g. the
    layout), or just *where*. :class:`FileNotFoundError` propagates (callers
    know what a missing file means); a FIFO, device, socket or directory,
    and with ``follow=False`` a symbolic link, raise :class:`UnsafePath`
    without blocking.
    """
    label = f"{name} " if name else ""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    if not follow:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP and not follow:
            raise UnsafePath(
                f"{label}is a symbolic link; luff follows none here", where=where
            ) from None
        if e.errno == errno.ENXIO:  # a socket
            raise UnsafePath(f"{label}is not a regular file", where=where) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(st.st_mode, name, where)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(
    path: str | os.PathLike[str],
    limit: int,
    *,
    follow: bool = True,
    name: str = "",
    where: object = "",
) -> bytes:
    """The whole of the regular file *path*, refused above *limit* bytes."""
    with open_regular(path, follow=follow, name=name, where=where) as f:
        # read(n) allocates n bytes up front: ask for the file's size (one more, to see
        # growth past the limit), not for the limit.
        data = f.read(min(os.fstat(f.fileno()).st_size, limit) + 1)
        while len(data) <= limit and (more := f.read(min(1 << 20, limit + 1 - len(data)))):
            data += more
    if len(data) > limit:
        label = f"{name} " if name else ""
        raise LimitExceeded(f"{label}is larger than {limit} bytes", where=where)
    return data
