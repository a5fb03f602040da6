"""Containers as machines of systemd-machined (Debian's systemd-container, in the test host's
root): `machinectl list` and `status` show each running container, `copy-to`/`copy-from` reach
into it, and it leaves the list when its unit stops."""

# ruff: noqa: F811  (every test takes test_runtime's `host` fixture, imported by its name)
from __future__ import annotations

import pytest
from helpers import skip_or_fail
from helpers.testhost import Machine, wait_for
from test_runtime import host, inspect, run_d, sdctr  # noqa: F401

pytestmark = pytest.mark.testhost


def machines(host: Machine) -> list[list[str]]:
    out = host.exec("machinectl", "list", "--no-legend", "--no-pager").stdout
    return [line.split() for line in out.splitlines() if line.strip()]


def test_a_container_is_a_machine_while_it_runs(host: Machine) -> None:
    if host.exec("sh", "-c", "command -v machinectl", check=False).returncode != 0:
        skip_or_fail("the test host has no machinectl (Debian's systemd-container)")
    cid = run_d(host, "--name", "web_m", "busybox", "sleep", "1000")
    try:
        # Docker's names may have underscores, a machine's may not
        assert ["web-m", "container", "sdctr"] in [m[:3] for m in machines(host)]
        status = host.exec("machinectl", "status", "--no-pager", "web-m").stdout
        pid = inspect(host, cid)["State"]["Pid"]
        assert f"Leader: {pid} " in status, status  # the container's PID 1
        assert f"Root: /run/sdctr/{cid}/rootfs" in status
        assert f"Unit: ctr-{cid[:12]}.service" in status
        assert f"web-m({cid[:32]})" in status  # the machine's id is the container's
        host.sh("echo from-the-host > /tmp/to-copy")
        host.exec("machinectl", "copy-to", "web-m", "/tmp/to-copy", "/tmp/copied")
        assert sdctr(host, "exec", cid, "cat", "/tmp/copied").stdout == "from-the-host\n"
        host.exec("rm", "-f", "/tmp/its-hostname")  # (the other unit mode made it)
        host.exec("machinectl", "copy-from", "web-m", "/etc/hostname", "/tmp/its-hostname")
        assert host.exec("cat", "/tmp/its-hostname").stdout == f"{cid[:12]}\n"
        sdctr(host, "stop", cid)
        wait_for(lambda: "web-m" not in [m[0] for m in machines(host)], what="unregistered at stop")
        sdctr(host, "start", cid)
        wait_for(lambda: "web-m" in [m[0] for m in machines(host)], what="registered again at start")
    finally:
        sdctr(host, "rm", "-f", cid)
    assert "web-m" not in [m[0] for m in machines(host)]
