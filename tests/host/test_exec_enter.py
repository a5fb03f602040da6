"""exec's way into a container's namespaces, both of them: setns with a pidfd of PID 1 (Linux
5.8), and the /proc/<pid>/ns descriptors an older kernel needs, opened and then checked against
the pidfd. The target is a process of the test's own in fresh namespaces."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdctr.init import enter

pytestmark = pytest.mark.host

KINDS = ("cgroup", "ipc", "uts", "net", "mnt")


@pytest.fixture
def target() -> Iterator[int]:
    """PID of a `sleep` in new cgroup, IPC, UTS, network, mount and PID namespaces."""
    p = subprocess.Popen(["unshare", "--cgroup", "--ipc", "--uts", "--net", "--mount", "--pid",
                          "--fork", "sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
            if children:
                yield int(children[0])
                return
            time.sleep(0.05)
        raise AssertionError("unshare's child never appeared")
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("way", ["pidfd", "proc"])
def test_enter_joins_every_namespace_of_the_leader(target: int, way: str) -> None:
    cgroup = Path(f"/proc/{target}/cgroup").read_text().splitlines()[0].split(":", 2)[2]
    leader = enter.Leader.find(target, cgroup)
    if way == "proc":
        leader.pidfd = None  # as before Linux 5.3: by PID, checked by start time
    root, spaces = leader.open_root_and_namespaces()
    theirs = {k: os.readlink(f"/proc/{target}/ns/{k}") for k in KINDS}
    theirs["pid_for_children"] = os.readlink(f"/proc/{target}/ns/pid")
    assert theirs["uts"] != os.readlink("/proc/self/ns/uts")  # the probe works
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # setns changes this process for good: a child of ours does it
        try:
            os.close(r)
            leader.enter(spaces)
            ours = {k: os.readlink(f"/proc/self/ns/{k}") for k in (*KINDS, "pid_for_children")}
            os.write(w, repr(ours).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        ours = f.read()
    os.waitpid(child, 0)
    for fd in (root, *spaces):
        os.close(fd)
    assert ours == repr(theirs)
