"""Writing back to a base's own tag, on every kind of target.

Registries and layouts are read and written conditionally (see
``luff.ops.index.update``); an archive is rewritten whole, as before this
mechanism existed. Whichever way, the write lands, and everything the
command was asked to write is written.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from luff.context import Context
from luff.mutate import mutate
from luff.ops.index import list_entries
from luff.testing import Registry, random_image, random_index


def luff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "luff", *args], capture_output=True, text=True, timeout=120
    )


def platforms(ref: str) -> list[str]:
    return sorted(str(e.platform) for e in list_entries(ref, ctx=Context()).entries)


def test_index_append_writes_back_into_an_archive(tmp_path: Path) -> None:
    tar = tmp_path / "app.tar"
    random_index(["linux/amd64"], size=200).push(f"oci-archive:{tar}:1")
    random_image("linux/arm64", size=200).push(f"oci:{tmp_path}/src:1")
    p = luff("index", "append", f"oci-archive:{tar}:1", f"oci:{tmp_path}/src:1")
    assert p.returncode == 0, p.stderr
    assert platforms(f"oci-archive:{tar}:1") == ["linux/amd64", "linux/arm64"]


def test_index_append_to_a_missing_archive_writes_it(tmp_path: Path) -> None:
    tar = tmp_path / "new.tar"
    random_image("linux/arm64", size=200).push(f"oci:{tmp_path}/src:1")
    p = luff("index", "append", f"oci-archive:{tar}:1", f"oci:{tmp_path}/src:1")
    assert p.returncode == 0, p.stderr
    assert platforms(f"oci-archive:{tar}:1") == ["linux/arm64"]


def test_mutate_writes_back_into_an_archive(tmp_path: Path) -> None:
    tar = tmp_path / "base.tar"
    idx = random_index(["linux/amd64", "linux/arm64"], size=200)
    idx.push(f"oci-archive:{tar}:1")
    p = luff("mutate", f"oci-archive:{tar}:1", "--label", "a=b")
    assert p.returncode == 0, p.stderr
    p = luff("digest", f"oci-archive:{tar}:1")
    assert p.returncode == 0 and p.stdout.strip() != str(idx.digest), p.stderr


def test_append_to_a_missing_layout_tag_creates_it(tmp_path: Path) -> None:
    random_image("linux/arm64", size=200).push(f"oci:{tmp_path}/src:1")
    p = luff("index", "append", f"oci:{tmp_path}/rel:1", f"oci:{tmp_path}/src:1")
    assert p.returncode == 0, p.stderr
    assert platforms(f"oci:{tmp_path}/rel:1") == ["linux/arm64"]


def test_mutate_writing_back_returns_a_plan_for_every_destination(tmp_path: Path) -> None:
    with Registry() as reg:
        random_index(["linux/amd64", "linux/arm64"], size=200).push(f"{reg.host}/acme/app:1")
        other = f"oci:{tmp_path}/other:x"
        r = mutate(f"{reg.host}/acme/app:1", labels={"a": "b"}, target=["1", "more", other])
        written = {str(d) for d, _ in r.plans}
        assert written == {f"{reg.host}/acme/app:1", f"{reg.host}/acme/app:more", other}, written
        for ref in (f"{reg.host}/acme/app:1", f"{reg.host}/acme/app:more", other):
            p = luff("digest", ref)
            assert p.stdout.strip() == str(r.descriptor.digest), (ref, p.stderr)
