"""`sdctr update` of a running container's limits (as Docker's): the cgroup files change at once
(SetUnitProperties), and the record too, so the next start keeps them."""

# ruff: noqa: F811  (every test takes test_runtime's `host` fixture, imported by its name)
from __future__ import annotations

import pytest
from helpers.testhost import Machine
from test_runtime import host, inspect, run_d, sdctr, unit_of  # noqa: F401

pytestmark = pytest.mark.testhost


def cgroup_file(host: Machine, cid: str, controller: str, name: str) -> str:
    cgroup = host.exec("systemctl", "show", "-P", "ControlGroup", unit_of(cid)).stdout.strip()
    return host.exec("cat", f"/sys/fs/cgroup/{controller}{cgroup}/{name}").stdout.strip()


def test_update_changes_a_running_containers_limits_and_its_record(host: Machine) -> None:
    cid = run_d(host, "-m", "64m", "-c", "512", "busybox", "sleep", "1000")
    try:
        assert cgroup_file(host, cid, "memory", "memory.limit_in_bytes") == str(64 << 20)
        assert sdctr(host, "update", "-m", "128m", "--cpu-shares", "256", cid).stdout.strip() == cid
        assert cgroup_file(host, cid, "memory", "memory.limit_in_bytes") == str(128 << 20)
        assert cgroup_file(host, cid, "cpu", "cpu.shares") == "256"
        assert inspect(host, cid)["HostConfig"]["Memory"] == 128 << 20
        assert inspect(host, cid)["State"]["Running"]  # changed live, not restarted
        sdctr(host, "stop", cid)
        sdctr(host, "start", cid)
        assert cgroup_file(host, cid, "memory", "memory.limit_in_bytes") == str(128 << 20)
        bad = sdctr(host, "update", "-m", "10xb", cid, check=False)
        assert bad.returncode == 125 and "--memory '10xb' is not a size" in bad.stderr
    finally:
        sdctr(host, "rm", "-f", cid)


def test_update_cpus_and_pids_limit_of_a_running_container(host: Machine) -> None:
    cid = run_d(host, "--cpus", "0.5", "--pids-limit", "30", "busybox", "sleep", "1000")
    try:
        period = int(cgroup_file(host, cid, "cpu", "cpu.cfs_period_us"))
        assert int(cgroup_file(host, cid, "cpu", "cpu.cfs_quota_us")) == period // 2
        assert cgroup_file(host, cid, "pids", "pids.max") == "30"
        pid = inspect(host, cid)["State"]["Pid"]
        assert sdctr(host, "update", "--cpus", "1.5", "--pids-limit", "40", cid).stdout.strip() == cid
        assert int(cgroup_file(host, cid, "cpu", "cpu.cfs_quota_us")) == period * 3 // 2
        assert cgroup_file(host, cid, "pids", "pids.max") == "40"
        assert inspect(host, cid)["State"]["Pid"] == pid  # changed live, not restarted
        sdctr(host, "update", "--pids-limit", "-1", cid)  # Docker's "no limit"
        assert cgroup_file(host, cid, "pids", "pids.max") == "max"
        sdctr(host, "stop", cid)
        sdctr(host, "start", cid)  # the record kept them
        assert int(cgroup_file(host, cid, "cpu", "cpu.cfs_quota_us")) == period * 3 // 2
        assert cgroup_file(host, cid, "pids", "pids.max") == "max"
    finally:
        sdctr(host, "rm", "-f", cid)
