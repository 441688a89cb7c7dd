"""A layout's directory on disk: blob paths, its boundary, its lock, and atomic writes.

- every digest is re-validated against the digest grammar before it becomes
  a path (:func:`blob_relpath`), so ``sha256:../../etc/passwd`` never
  reaches the file system;
- every file is written to a temporary name in the layout, then renamed;
- a ``blobs`` directory, or a ``blobs/ALG`` directory in it, that is a
  symbolic link is refused, so luff never writes or deletes outside the
  layout;
- a handle that writes holds a shared ``flock`` on the directory until it is
  released; ``gc`` takes it exclusively (:meth:`LayoutDir.exclusive`).

Errors name the layout by a *where* argument: a store may rename itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

from luff.errors import UsageError
from luff.model.digest import Digest, is_digest, readinto
from luff.stores.files import UnsafePath

TMP_PREFIX = ".luff-tmp-"
CHUNK = 1 << 20
_T = TypeVar("_T")
_NO_LINKS = "; luff neither writes nor deletes outside the layout"


def blob_relpath(digest: Digest | str) -> str:
    """``blobs/ALG/HEX`` for *digest*, after checking it against the digest grammar."""
    d = Digest.parse(str(digest))  # raises InvalidDigest for anything path-like
    return f"blobs/{d.algorithm}/{d.hex}"


class LayoutDir:
    """The directory of a layout at *path*, as the store that owns it writes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None  # flock on the directory: shared (writing) or gc's

    # --- boundary ----------------------------------------------------------
    def _check_dir(self, rel: str, st: os.stat_result, where: str) -> None:
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{rel} is a symbolic link{_NO_LINKS}", where=where)
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{rel} is not a directory", where=where)

    def check_boundary(self, where: str) -> None:
        """Refuse a layout whose ``blobs`` or ``blobs/ALG`` directory is a symbolic link
        (writing or deleting blobs would happen wherever it points)."""
        blobs = self.path / "blobs"
        try:
            self._check_dir("blobs", os.lstat(blobs), where)
        except FileNotFoundError:
            return
        with os.scandir(blobs) as it:
            for e in it:
                if e.is_symlink():
                    link = f"blobs/{e.name} is a symbolic link"
                    raise UnsafePath(link + _NO_LINKS, where=where)

    def blob_dir(self, digest: Digest, where: str) -> Path:
        """``blobs/ALG``, made when missing; refused when it (or ``blobs``) is not a directory."""
        for rel in ("blobs", f"blobs/{digest.algorithm}"):
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.path / rel, 0o755)
            self._check_dir(rel, os.lstat(self.path / rel), where)
        return self.path / "blobs" / digest.algorithm

    def blob_files(self, where: str) -> Iterator[tuple[Digest, Path, int]]:
        """``(digest, path, size)`` of every regular file in ``blobs/ALG/`` named like a digest.

        Symbolic links and other non-regular files are skipped; a symlinked
        ``blobs`` or ``blobs/ALG`` directory is refused (:class:`UnsafePath`).
        """
        self.check_boundary(where)
        blobs = self.path / "blobs"
        try:
            algs = sorted(e.name for e in os.scandir(blobs) if e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return
        for alg in algs:
            with os.scandir(blobs / alg) as it:
                files = sorted((e.name, e) for e in it)
            for name, e in files:
                text = f"{alg}:{name}"
                if not is_digest(text) or not e.is_file(follow_symlinks=False):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    yield Digest.parse(text), Path(e.path), e.stat(follow_symlinks=False).st_size

    def stale_temporaries(self, age: float = 3600.0) -> list[Path]:
        """Temporary files left by interrupted writes, older than *age* seconds."""
        now = time.time()
        out = []
        for p in self.path.glob(TMP_PREFIX + "*"):
            with contextlib.suppress(FileNotFoundError):
                if now - p.stat().st_mtime > age:
                    out.append(p)
        return out

    # --- the directory lock ------------------------------------------------
    def hold_shared(self) -> None:
        """Take the directory's shared lock (kept until :meth:`release`)."""
        if self._fd is not None:
            return
        with self._lock:
            if self._fd is None:
                fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
                fcntl.flock(fd, fcntl.LOCK_SH)  # waits while gc runs
                self._set_fd(fd)

    def _set_fd(self, fd: int) -> None:
        self._fd = fd
        # A handle dropped without release() lets go of the lock when it is collected.
        self._finalizer = weakref.finalize(self, os.close, fd)

    def release(self) -> None:
        """Let go of the directory's lock, if held."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            self._finalizer()

    @contextlib.contextmanager
    def exclusive(self, where: str) -> Iterator[None]:
        """Hold the directory's lock exclusively: no other handle is writing."""
        self.release()
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(
                f"{where}: another luff process (or open handle) is writing this layout; "
                "try again when it has finished"
            ) from None
        self._set_fd(fd)
        try:
            yield
        finally:
            self.release()

    # --- writing -------------------------------------------------------------
    def _write(self, fill: Callable[[BinaryIO], _T], dest: Callable[[_T], Path]) -> _T:
        """Write a temporary file with *fill*, then rename it to ``dest(what fill returned)``
        (mode 0644); the temporary file is removed on failure. Returns what *fill* returned."""
        self.hold_shared()
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=self.path)
        try:
            with os.fdopen(fd, "wb", buffering=0) as f:  # large writes straight to the file
                result = fill(f)
            path = dest(result)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return result

    def write_file(self, rel: str, data: bytes) -> None:
        """Replace the file *rel* (relative to the layout) with *data*, atomically."""
        self._write(lambda f: f.write(data), lambda _: self.path / rel)

    def write_json(self, rel: str, obj: object) -> None:
        """Replace the file *rel* with *obj* as compact JSON, atomically."""
        self.write_file(rel, json.dumps(obj, separators=(",", ":")).encode())

    def write_blob(self, fill: Callable[[BinaryIO], Digest], where: str) -> Digest:
        """Write a blob: *fill* writes its bytes and returns its digest; the file is then
        renamed to ``blobs/ALG/HEX``. Returns the digest."""
        return self._write(fill, lambda d: self.blob_dir(d, where) / d.hex)


def copy_into(src: BinaryIO, f: BinaryIO) -> None:
    """Write *src* to the unbuffered file *f*, read into one reused buffer when it can."""
    buf = memoryview(bytearray(CHUNK))
    first = readinto(src, buf)
    if first is None:
        while chunk := src.read(CHUNK):
            f.write(chunk)
        return
    n = first
    while n:
        view = buf[:n]
        while view:  # a raw write may be short
            view = view[f.write(view) :]
        n = readinto(src, buf) or 0
