"""The OCI distribution-spec conformance suite against ``luff registry serve``.

All four workflows (pull, push, content discovery, content management), in
four modes: in memory, with ``--storage``, with ``--htpasswd`` (basic auth)
and with ``--token`` (the suite follows the Bearer challenge to ``/token``
with the same credentials). Every spec must pass or be skipped; none may fail.

The suite is a Go test binary (``conformance.test``, built from
opencontainers/distribution-spec ``conformance/``). Point ``LUFF_OCI_CONFORMANCE``
at it, or put it on ``PATH``; without it these tests are skipped.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from luff.server.auth import hash_password
from tests.test_server_uploads import serve

ENV_VAR = "LUFF_OCI_CONFORMANCE"
WORKFLOWS = ("Pull", "Push", "Content Discovery", "Content Management")
USER, PASSWORD = "conformance", "c0nf-pw"


def suite_binary() -> str:
    path = os.environ.get(ENV_VAR) or shutil.which("conformance.test")
    if not path:
        pytest.skip(
            f"the OCI conformance suite is not available: set {ENV_VAR}=/path/to/conformance.test "
            "(built from opencontainers/distribution-spec conformance/) or put conformance.test "
            "on PATH"
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"{ENV_VAR}={path} is not an executable file")
    return path


def run_suite(binary: str, host: str, out: Path, auth: bool) -> dict[str, collections.Counter[str]]:
    """Run every workflow against http://host; returns {workflow: Counter(passed/failed/skipped)}."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCI_")}
    env.update(
        OCI_ROOT_URL=f"http://{host}",
        OCI_NAMESPACE="myorg/myrepo",
        OCI_CROSSMOUNT_NAMESPACE="myorg/other",
        OCI_TEST_PULL="1",
        OCI_TEST_PUSH="1",
        OCI_TEST_CONTENT_DISCOVERY="1",
        OCI_TEST_CONTENT_MANAGEMENT="1",
        # a mount without from= never mounts here: run the spec that checks that
        OCI_AUTOMATIC_CROSSMOUNT="false",
        OCI_HIDE_SKIPPED_WORKFLOWS="0",
        OCI_DEBUG="1",
        OCI_REPORT_DIR=str(out),
    )
    if auth:
        env.update(OCI_USERNAME=USER, OCI_PASSWORD=PASSWORD)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "stdout.log", "wb") as log:
        p = subprocess.run(
            [binary, "-test.v", "-ginkgo.no-color"],
            cwd=out,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    junit = out / "junit.xml"
    assert junit.exists(), f"the suite wrote no junit.xml (exit {p.returncode}); see {out}"
    counts: dict[str, collections.Counter[str]] = {w: collections.Counter() for w in WORKFLOWS}
    failed: list[str] = []
    prefix = "OCI Distribution Conformance Tests "
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "").removeprefix("[It] ")
        workflow = next((w for w in WORKFLOWS if name.startswith(f"{prefix}{w} ")), "other")
        if case.find("failure") is not None or case.find("error") is not None:
            status = "failed"
            failed.append(name)
        elif case.find("skipped") is not None:
            status = "skipped"
        else:
            status = "passed"
        counts.setdefault(workflow, collections.Counter())[status] += 1
    summary = ", ".join(
        f"{w}: {c['passed']} passed/{c['failed']} failed/{c['skipped']} skipped"
        for w, c in counts.items()
    )
    print(f"conformance ({host}): {summary}")
    assert not failed, f"{len(failed)} spec(s) failed (log in {out}):\n" + "\n".join(failed)
    assert p.returncode == 0, f"the suite exited {p.returncode}; see {out / 'stdout.log'}"
    return counts


@pytest.mark.parametrize("mode", ["memory", "disk", "htpasswd", "token"])
def test_oci_conformance(mode: str, tmp_path: Path) -> None:
    binary = suite_binary()
    args = ["--quiet"]
    if mode == "disk":
        args += ["--storage", str(tmp_path / "store")]
    if mode in ("htpasswd", "token"):
        htpasswd = tmp_path / "htpasswd"
        htpasswd.write_text(f"{USER}:{hash_password(PASSWORD, rounds=4)}\n")
        args += ["--htpasswd", str(htpasswd)]
    if mode == "token":
        args.append("--token")
    with serve(*args) as (host, _):
        counts = run_suite(binary, host, tmp_path / "report", auth=mode in ("htpasswd", "token"))
    for workflow in WORKFLOWS:
        c = counts[workflow]
        # every workflow ran (a workflow skipped as a whole would pass vacuously)
        assert c["passed"] >= 10 and c["failed"] == 0, (workflow, dict(c))
