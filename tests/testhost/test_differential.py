"""The differential check of a Docker user's day (issue 14, bench/differential.py), sdctr's half:
the day's commands played in a test host of their own; every row must show what the table
recorded (bench/differential.json: both tools' normalised results) and the verdict DAY expects
(agree, or differs on purpose). A regression flips a row; so does a fix, and then the README's
table is stale: `bench/differential.py --record --out FILE` makes both again."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from types import ModuleType

import pytest
from helpers import REPO
from helpers.rootfs import BUSYBOX_ROOTFS_SH
from helpers.testhost import Machine, boot_testhost, remove_testhost

pytestmark = pytest.mark.testhost

SCRIPT = REPO / "bench/differential.py"


def differential() -> ModuleType:
    spec = importlib.util.spec_from_file_location("differential", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def own_host() -> Iterator[Machine]:
    """A test host of its own: `ps`, `images`, `volume ls` and `network ls` list everything."""
    host = boot_testhost()
    try:
        host.exec("sh", "-c", "rm -rf /tmp/bb && sh -s /tmp/bb", input=BUSYBOX_ROOTFS_SH.read_text())
        host.sh("tar -C /tmp/bb -cf /tmp/bb.tar . && sdctr import /tmp/bb.tar bb")
        yield host
    finally:
        remove_testhost(host)


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("mode", ["transient", "unit-file"])
def test_a_docker_users_day_agrees_with_podman_where_the_table_says(own_host: Machine, mode: str) -> None:
    """The table's rows, with transient units and with the unit files an old systemd needs."""
    diff = differential()
    own_host.cp(SCRIPT, "/root/differential.py")
    flags = ["--unit-file-mode"] if mode == "unit-file" else []
    out = own_host.exec("python3", "/root/differential.py", "play", "sdctr", *flags, "--", f"/root/{mode}",
                        timeout=1200).stdout
    sdctr = json.loads(out)
    expected = json.loads(diff.EXPECTED.read_text())
    rows = [s for s in diff.DAY if not s.hidden]
    assert sorted(expected) == sorted(s.key for s in rows), "differential.json is stale: --record it"
    flipped = []
    for s in rows:
        podman, was = expected[s.key]["podman"], expected[s.key]["sdctr"]
        verdict = diff.verdict(s, podman, sdctr[s.key])
        if diff.seen(sdctr[s.key], s) != diff.seen(was, s) or verdict != diff.expected_verdict(s):
            flipped.append(f"{s.key}: {verdict} (the table: {diff.expected_verdict(s)})\n"
                           f"  podman    {diff.seen(podman, s)}\n  the table {diff.seen(was, s)}\n"
                           f"  sdctr now {diff.seen(sdctr[s.key], s)}, "
                           f"stderr {sdctr[s.key]['stderr'][:300]!r}")
    assert not flipped, "\n".join(flipped)
    # the day cleans up after itself
    assert own_host.exec("sdctr", "ps", "-aq").stdout == ""
