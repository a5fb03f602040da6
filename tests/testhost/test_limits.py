"""Limits as systemd properties, under a real systemd (252, cgroup v1), checked where a user
looks: `systemctl show`, the kernel's cgroup files, and what the container's own processes see
(`ulimit -n`, their CPU affinity). --property passes systemd's resource properties on, and what
systemd refuses comes back as one line; --ulimit, --cpuset-cpus, --memory-swap and --blkio-weight
become their unit properties; `sdctr update --property` changes a running container."""

# ruff: noqa: F811  (every test takes test_runtime's `host` fixture, imported by its name)
from __future__ import annotations

import pytest
from helpers.testhost import Machine, wait_for
from test_runtime import host, inspect, run_d, sdctr, unit_files, unit_of  # noqa: F401
from test_update_live import cgroup_file

pytestmark = pytest.mark.testhost


def bfq(weight: int) -> str:
    """What systemd 252 writes into cgroup v1's blkio.bfq.weight for BlockIOWeight=weight: its
    io.weight -> BFQ mapping (BFQ_WEIGHT in src/core/cgroup.c: 100 stays 100, 10000 is 1000),
    not the value itself as runc writes it (seen: 300 -> 118)."""
    return str(weight if weight <= 100 else 100 + (weight - 100) * 900 // 9900)


def show(host: Machine, cid: str, prop: str) -> str:
    return host.exec("systemctl", "show", "-P", prop, unit_of(cid)).stdout.strip()


def test_property_passes_systemds_resource_properties_on(host: Machine) -> None:
    cid = run_d(host, "--property", "MemoryHigh=200M", "--property", "IPAddressDeny=any",
                "--property", "BlockIOWeight=300", "--property", "TasksAccounting=yes",
                "busybox", "sleep", "1000")
    try:
        assert show(host, cid, "MemoryHigh") == str(200 << 20)  # kept on v1, applied by v2 hosts
        assert sorted(show(host, cid, "IPAddressDeny").split()) == ["0.0.0.0/0", "::/0"]
        assert show(host, cid, "BlockIOWeight") == "300"
        assert cgroup_file(host, cid, "blkio", "blkio.bfq.weight") == bfq(300)
        assert inspect(host, cid)["HostConfig"]["UnitProperties"][0] == "MemoryHigh=200M"
    finally:
        sdctr(host, "rm", "-f", cid)


def test_what_systemd_refuses_is_one_line_and_leaves_nothing(host: Machine) -> None:
    if unit_files(host):
        pytest.skip("a unit file's bad value is a warning in the journal: systemd runs the unit without it")
    before = sdctr(host, "ps", "-aq").stdout
    bad = sdctr(host, "run", "-d", "--property", "IOWeight=0", "busybox", "sleep", "1000", check=False)
    assert bad.returncode == 125, bad
    [line] = bad.stderr.strip().splitlines()
    assert "systemd refused" in line and "IOWeight" in line, line
    assert sdctr(host, "ps", "-aq").stdout == before  # no record, no unit
    unknown = sdctr(host, "run", "-d", "--property", "MemoryHihg=1G", "busybox", "true", check=False)
    assert unknown.returncode == 125 and "MemoryHigh" in unknown.stderr  # the supported, listed


CHECK = "ulimit -n; ulimit -Hn; grep Cpus_allowed_list /proc/self/status; exec sleep 1000"


def test_ulimit_cpuset_swap_and_blkio_weight_are_where_a_user_looks(host: Machine) -> None:
    cid = run_d(host, "--ulimit", "nofile=1024:4096", "--cpuset-cpus", "1", "--blkio-weight", "700",
                "-m", "64m", "--memory-swap", "96m", "busybox", "sh", "-c", CHECK)
    try:
        wait_for(lambda: "Cpus_allowed_list" in sdctr(host, "logs", cid).stdout, timeout=10, what="the check")
        soft, hard, cpus = sdctr(host, "logs", cid).stdout.split("\n")[:3]
        assert (soft, hard) == ("1024", "4096")  # what the container's own shell sees
        assert cpus.split() == ["Cpus_allowed_list:", "1"]  # v1: CPUAffinity, see resource_properties()
        assert show(host, cid, "CPUAffinity") == "1"
        assert cgroup_file(host, cid, "memory", "memory.limit_in_bytes") == str(64 << 20)
        assert cgroup_file(host, cid, "memory", "memory.memsw.limit_in_bytes") == str(96 << 20)
        assert show(host, cid, "BlockIOWeight") == "700"
        assert cgroup_file(host, cid, "blkio", "blkio.bfq.weight") == bfq(700)
        config = inspect(host, cid)["HostConfig"]
        assert config["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 4096}]
        assert (config["CpusetCpus"], config["MemorySwap"], config["BlkioWeight"]) == ("1", 96 << 20, 700)
        # and again at the next start: the record keeps them
        sdctr(host, "restart", cid)
        assert cgroup_file(host, cid, "memory", "memory.memsw.limit_in_bytes") == str(96 << 20)
    finally:
        sdctr(host, "rm", "-f", cid)


def test_update_property_changes_a_running_container(host: Machine) -> None:
    cid = run_d(host, "--property", "BlockIOWeight=300", "busybox", "sleep", "1000")
    try:
        pid = inspect(host, cid)["State"]["Pid"]
        assert sdctr(host, "update", "--property", "BlockIOWeight=800", cid).stdout.strip() == cid
        assert cgroup_file(host, cid, "blkio", "blkio.bfq.weight") == bfq(800)
        assert inspect(host, cid)["State"]["Pid"] == pid  # changed live, not restarted
        assert inspect(host, cid)["HostConfig"]["UnitProperties"] == ["BlockIOWeight=800"]
        bad = sdctr(host, "update", "--property", "LimitNOFILE=10", cid, check=False)
        assert bad.returncode == 125 and "update changes the cgroup's properties alone" in bad.stderr
    finally:
        sdctr(host, "rm", "-f", cid)


def affinity(host: Machine, pid: int) -> str:
    status = host.exec("cat", f"/proc/{pid}/status").stdout
    return next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Cpus_allowed_list:"))


def test_update_cpuset_blkio_weight_and_memory_swap_of_a_running_container(host: Machine) -> None:
    """Docker's three other update flags, live (cgroup v1 here: --cpuset-cpus is the processes'
    affinity and --memory-swap memsw, both written by sdctr; the blkio weight by systemd), then
    kept by the record for the next start."""
    cid = run_d(host, "-m", "64m", "busybox", "sleep", "1000")
    try:
        pid = inspect(host, cid)["State"]["Pid"]
        assert affinity(host, pid) == "0-1"
        sdctr(host, "update", "--cpuset-cpus", "1", "--blkio-weight", "300", "--memory-swap", "96m", cid)
        assert inspect(host, cid)["State"]["Pid"] == pid  # live, not restarted
        assert affinity(host, pid) == "1"
        assert cgroup_file(host, cid, "blkio", "blkio.bfq.weight") == bfq(300)
        assert cgroup_file(host, cid, "memory", "memory.memsw.limit_in_bytes") == str(96 << 20)
        sdctr(host, "update", "-m", "32m", "--memory-swap", "48m", cid)  # lowered: memory first
        assert cgroup_file(host, cid, "memory", "memory.memsw.limit_in_bytes") == str(48 << 20)
        sdctr(host, "update", "-m", "128m", "--memory-swap", "256m", cid)  # raised: memsw first
        assert cgroup_file(host, cid, "memory", "memory.limit_in_bytes") == str(128 << 20)
        config = inspect(host, cid)["HostConfig"]
        assert (config["CpusetCpus"], config["MemorySwap"], config["BlkioWeight"]) == ("1", 256 << 20, 300)
        sdctr(host, "restart", cid)
        assert affinity(host, inspect(host, cid)["State"]["Pid"]) == "1"
        assert cgroup_file(host, cid, "memory", "memory.memsw.limit_in_bytes") == str(256 << 20)
        assert cgroup_file(host, cid, "blkio", "blkio.bfq.weight") == bfq(300)
    finally:
        sdctr(host, "rm", "-f", cid)
