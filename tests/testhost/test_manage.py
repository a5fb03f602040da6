"""The verbs a Docker user expects beyond run/stop/rm (issue 14): pause/unpause, rename, top, diff,
cp, commit, prune, df, info, version; under a real systemd, checked as that user would, with the
kernel's own files where the kernel is the judge."""

# ruff: noqa: F811  (every test takes test_runtime's `host` fixture, imported by its name)
from __future__ import annotations

import time

import pytest
from helpers.testhost import Machine, wait_for
from test_runtime import CGROUP_FS, host, leftovers, run_d, sdctr, unit_of  # noqa: F401

pytestmark = pytest.mark.testhost

COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done"


def counter(host: Machine, cid: str) -> int:
    """The container's counter, read through its mounted root from outside (exec would not run
    in a frozen container)."""
    return int(host.exec("cat", f"/run/sdctr/{cid}/rootfs/tmp/n").stdout)


def freezer_state(host: Machine, cid: str) -> str:
    """What the kernel says of the unit's cgroup, read on this machine: v1's freezer.state, or
    v2's cgroup.freeze ("1" frozen); "" where the cgroup does not exist."""
    base = f"sdctr-testhost-{host.name}/sdctr.slice/{unit_of(cid)}"
    path = (CGROUP_FS / "freezer" / base / "freezer.state" if host.state()["cgroup_layout"] == "v1"
            else CGROUP_FS / base / "cgroup.freeze")
    return path.read_text().strip() if path.exists() else ""


def test_pause_freezes_every_process_and_unpause_resumes_them(host: Machine) -> None:
    cid = run_d(host, "--name", "frozen", "busybox", "sh", "-c", COUNTER)
    other = run_d(host, "busybox", "sleep", "1000")
    try:
        n = f"/run/sdctr/{cid}/rootfs/tmp/n"
        wait_for(lambda: host.exec("test", "-s", n, check=False).returncode == 0, what="the counter")
        r = sdctr(host, "pause", "frozen")
        assert r.stdout == "frozen\n"
        assert freezer_state(host, cid) in ("FROZEN", "1")
        before = counter(host, cid)
        time.sleep(1)
        assert counter(host, cid) == before, "the counter advanced in a paused container"
        ps = sdctr(host, "ps").stdout
        line = next(x for x in ps.splitlines() if x.endswith("frozen"))
        assert "(Paused)" in line, ps
        assert sdctr(host, "ps", "-q", "--filter", "status=paused").stdout.split() == [cid[:12]]
        shown = sdctr(host, "inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "frozen").stdout
        assert shown == "paused true\n"
        assert freezer_state(host, other) in ("", "THAWED", "0")  # the others run on
        r = sdctr(host, "pause", "frozen", check=False)
        assert r.returncode == 1 and "is already paused" in r.stderr
        sdctr(host, "unpause", "frozen")
        assert freezer_state(host, cid) in ("", "THAWED", "0")
        wait_for(lambda: counter(host, cid) > before + 5, what="the counter to advance again")
        r = sdctr(host, "unpause", "frozen", check=False)
        assert r.returncode == 1 and r.stderr.startswith("sdctr: error: container frozen is not paused")
        assert sdctr(host, "pause", "nosuch", check=False).returncode == 1
        # a paused container stops as any other (Docker resumes it first), and leaves nothing
        sdctr(host, "pause", "frozen")
        sdctr(host, "stop", "-t", "2", "frozen")
        assert host.exec("systemctl", "is-active", unit_of(cid), check=False).stdout.strip() == "inactive"
        assert sdctr(host, "wait", cid).stdout.strip() == "143"  # the counter's sh died of SIGTERM
        sdctr(host, "rm", cid)
        assert leftovers(host, cid) == []
        r = sdctr(host, "pause", other[:12], check=False)
        assert r.returncode == 0
        sdctr(host, "rm", "-f", other)
        assert leftovers(host, other) == []
    finally:
        sdctr(host, "rm", "-f", cid, other, check=False)
