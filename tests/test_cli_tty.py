"""Progress is drawn on a terminal's stderr, never in a pipe."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from luff.context import Context
from luff.testing import random_image
from tests.conftest import Reg


def test_progress_on_tty_only(registry: Reg, registry2: Reg) -> None:
    img = random_image(size=200_000)
    img.push(f"{registry.host}/tty/app:1", Context())
    master, slave = pty.openpty()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "luff",
            "copy",
            f"{registry.host}/tty/app:1",
            f"{registry2.host}/tty/app:1",
        ],
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    out, _ = p.communicate(timeout=60)
    os.close(master)
    assert p.returncode == 0
    tty = b"".join(chunks).decode(errors="replace")
    assert "copying" in tty  # the rich progress bar
    assert out.decode().strip() == f"{registry2.host}/tty/app@{img.digest}"
    # The same copy in a pipe prints nothing on stderr (covered in test_cli too).
    q = subprocess.run(
        [
            sys.executable,
            "-m",
            "luff",
            "copy",
            f"{registry.host}/tty/app:1",
            f"{registry2.host}/tty/again:1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert q.returncode == 0 and q.stderr == ""
