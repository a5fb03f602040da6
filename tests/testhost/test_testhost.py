"""The testhost tier is real: systemd is PID 1, unit limits reach the kernel, journald records;
for systemd-run's units and for an sdctr container.

Also the harness's own promises: status and stdio pass through `exec`, `cp` copies, `reboot`
keeps the root, several hosts run at once, and `down` leaves nothing behind.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import checkout_version
from helpers.rootfs import BUSYBOX_ROOTFS_SH
from helpers.testhost import HOSTS, Machine, boot_testhost, remove_testhost, wait_for

pytestmark = pytest.mark.testhost

CGROUP_FS = Path("/sys/fs/cgroup")


def cgroup_of(pid: str) -> str | None:
    """A process's /proc/PID/cgroup; None for one that exited since it was listed."""
    try:
        return Path(f"/proc/{pid}/cgroup").read_text()
    except FileNotFoundError:
        return None


def kernel_log() -> str:
    return subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout


def assert_memory_limit_is_enforced(host: Machine) -> None:
    """A unit with MemoryLimit=30M that allocates 100 MB is killed by the kernel's OOM killer."""
    unit = f"oom-{uuid.uuid4().hex[:8]}"
    r = host.exec("systemd-run", "--wait", f"--unit={unit}", "-p", "MemoryLimit=30M",
                  "python3", "-c", "x = bytearray(100 * 1024 * 1024); print('survived')", check=False)
    assert r.returncode != 0, r.stdout + r.stderr
    status = host.exec("systemctl", "status", "--no-pager", f"{unit}.service", check=False).stdout
    assert "status=9/KILL" in status, status
    assert "failed" in status, status
    # The kernel names the memory cgroup whose limit it enforced: the unit's own, in this host.
    memcg = f"oom_memcg=/sdctr-testhost-{host.name}/system.slice/{unit}.service"
    wait_for(lambda: memcg in kernel_log(), what=f"the kernel's OOM report for {memcg}")
    journal = host.exec("journalctl", "--no-pager", "-u", f"{unit}.service").stdout
    assert "status=9/KILL" in journal, journal
    assert "survived" not in r.stdout


def test_boot_reaches_running_with_this_checkout(testhost: Machine) -> None:
    assert testhost.exec("systemctl", "is-system-running").stdout.strip() == "running"
    assert testhost.exec("readlink", "/proc/1/exe").stdout.strip().endswith("systemd")
    assert testhost.exec("systemctl", "--version").stdout.startswith("systemd 252 ")
    assert testhost.exec("sdctr", "--version").stdout.strip() == f"sdctr version {checkout_version()}"
    assert testhost.exec("hostname").stdout.strip() == testhost.name


def test_unit_limits_reach_the_kernel(testhost: Machine) -> None:
    unit = f"lim-{uuid.uuid4().hex[:8]}"
    testhost.exec("systemd-run", f"--unit={unit}", "-p", "MemoryLimit=30M", "-p", "CPUShares=512",
                  "sleep", "300")
    try:
        # Read from the machine's own cgroup file system, not the host's view of it.
        base = f"sdctr-testhost-{testhost.name}/system.slice/{unit}.service"
        assert (CGROUP_FS / "memory" / base / "memory.limit_in_bytes").read_text().strip() == "31457280"
        assert (CGROUP_FS / "cpu" / base / "cpu.shares").read_text().strip() == "512"
        status = testhost.exec("systemctl", "status", "--no-pager", unit).stdout
        assert "active (running)" in status
    finally:
        testhost.exec("systemctl", "stop", unit)


def test_memory_limit_is_enforced(testhost: Machine) -> None:
    assert_memory_limit_is_enforced(testhost)


@pytest.fixture(scope="module")
def busybox(testhost: Machine) -> Iterator[str]:
    """The tiers' busybox root as an image in the test host, made by its own tools."""
    testhost.exec("sh", "-c", "rm -rf /tmp/bb-th && sh -s /tmp/bb-th", input=BUSYBOX_ROOTFS_SH.read_text())
    testhost.sh("tar -C /tmp/bb-th -cf /tmp/bb-th.tar . && sdctr import /tmp/bb-th.tar busybox-th")
    yield "busybox-th"
    testhost.sh("sdctr rmi -f busybox-th; rm -rf /tmp/bb-th /tmp/bb-th.tar", check=False)


def test_an_sdctr_containers_limits_and_oom_kill_are_the_kernels(testhost: Machine, busybox: str) -> None:
    """What the systemd-run tests above prove for any unit, proven for sdctr's own: the limits in
    the unit's cgroup files, the kernel's OOM killer naming that cgroup, its lines in journald."""
    # 10 s before the allocation: time for the checks below on a busy machine (with 3 s, one CI
    # run saw the container's cgroup change under them)
    script = "echo started; sleep 10; exec dd if=/dev/zero of=/dev/null bs=100M count=1"
    cid = testhost.exec("sdctr", "run", "-d", "-m", "32m", "-c", "512", "--pids-limit", "40", busybox,
                        "sh", "-c", script).stdout.strip()
    unit = f"ctr-{cid[:12]}.service"
    base = f"sdctr-testhost-{testhost.name}/sdctr.slice/{unit}"
    try:
        # the container's command runs before we look
        journal = ["journalctl", "--no-pager", "-o", "cat", "-u", unit]
        wait_for(lambda: "started" in testhost.exec(*journal).stdout, what="the container's first line")
        assert (CGROUP_FS / "memory" / base / "memory.limit_in_bytes").read_text().strip() == "33554432"
        assert (CGROUP_FS / "cpu" / base / "cpu.shares").read_text().strip() == "512"
        assert (CGROUP_FS / "pids" / base / "pids.max").read_text().strip() == "40"
        # the reaper and the command run in that cgroup, not somewhere with no limit. The init that
        # handed them over may be listed for a moment while it exits (seen here: gone when read;
        # one CI run saw a listed process outside the unit's cgroups), so this must hold within 8 s
        def only_the_container_inside() -> dict[str, str] | None:
            procs = (CGROUP_FS / "memory" / base / "cgroup.procs").read_text().split()
            alive = {p: text for p in procs if (text := cgroup_of(p)) is not None}
            return alive if alive and all(t.count(f"/{base}") >= 3 for t in alive.values()) else None

        wait_for(only_the_container_inside, timeout=8, what=f"only the container's processes in {base}")
        assert testhost.exec("sdctr", "wait", cid).stdout.strip() == "137"
        memcg = f"oom_memcg=/{base}"
        wait_for(lambda: memcg in kernel_log(), what=f"the kernel's OOM report for {memcg}")
        journal = testhost.exec("journalctl", "--no-pager", "-o", "cat", "-u", unit).stdout
        assert "started" in journal, journal
    finally:
        testhost.exec("sdctr", "rm", "-f", cid)


def test_journal_shows_a_units_lines(testhost: Machine) -> None:
    unit = f"echo-{uuid.uuid4().hex[:8]}"
    line = f"hello from {unit}"
    testhost.exec("systemd-run", "--wait", f"--unit={unit}", "echo", line)
    wait_for(lambda: line in testhost.exec("journalctl", "--no-pager", "-u", unit).stdout,
             what="the unit's line in the journal")


def test_exec_passes_status_and_stdio_through(testhost: Machine) -> None:
    assert testhost.exec("sh", "-c", "exit 7", check=False).returncode == 7
    r = testhost.exec("sh", "-c", "cat; echo err >&2", input="from stdin\n")
    assert r.stdout == "from stdin\n"
    assert r.stderr == "err\n"
    # Processes started by exec belong to the host's cgroup tree, not the machine's: its root on
    # v1, a leaf of its own on v2 (whose root takes no process once controllers are enabled).
    cgroups = testhost.exec("cat", "/proc/self/cgroup").stdout
    if testhost.state()["cgroup_layout"] == "v2":
        assert cgroups == "0::/testhost-exec\n"
    else:
        assert "memory:/\n" in cgroups


def test_cp_copies_files_and_directories(testhost: Machine, tmp_path: Path) -> None:
    f = tmp_path / "script.sh"
    f.write_text("#!/bin/sh\necho copied\n")
    f.chmod(0o755)
    testhost.cp(f, "/usr/local/bin/copied-script")
    assert testhost.exec("copied-script").stdout == "copied\n"
    d = tmp_path / "tree"
    (d / "sub").mkdir(parents=True)
    (d / "sub/file").write_text("deep\n")
    testhost.cp(d, "/srv/tree")
    assert testhost.exec("cat", "/srv/tree/sub/file").stdout == "deep\n"


def test_trixie_runs_systemd_257_with_enforced_limits() -> None:
    host = boot_testhost("trixie")
    try:
        assert host.exec("systemctl", "--version").stdout.startswith("systemd 257 ")
        assert host.exec("systemctl", "is-system-running").stdout.strip() == "running"
        assert_memory_limit_is_enforced(host)
    finally:
        remove_testhost(host)


def test_reboot_keeps_the_root_and_boots_again() -> None:
    host = boot_testhost()
    try:
        boot_id = host.exec("cat", "/proc/sys/kernel/random/boot_id").stdout
        pid1_before = host.state()["init_pid"]
        host.exec("sh", "-c", "echo kept > /root/kept; echo kept-lib > /var/lib/sdctr/kept")
        marker = f"before-reboot-{uuid.uuid4().hex[:8]}"
        host.exec("systemd-cat", "-t", "reboot-test", "echo", marker)
        wait_for(lambda: marker in host.exec("journalctl", "--no-pager", "-t", "reboot-test").stdout,
                 what="the marker in the journal")
        host.reboot()
        pid1_after = host.state()["init_pid"]
        assert pid1_after != pid1_before
        assert not Path(f"/proc/{pid1_before}").exists()
        assert host.exec("systemctl", "is-system-running").stdout.strip() == "running"
        assert host.exec("cat", "/root/kept", "/var/lib/sdctr/kept").stdout == "kept\nkept-lib\n"
        # journald keeps the previous boot's lines, as on a machine with a persistent journal, and
        # saw systemd start twice. Both boots carry one boot ID: /proc/sys/kernel/random/boot_id is
        # this machine's kernel's (the harness gives no boot its own, as nspawn would), so
        # `journalctl --list-boots` shows one boot, and a test cannot tell boots apart by it.
        assert marker in host.exec("journalctl", "--no-pager", "-t", "reboot-test").stdout
        starts = host.exec("journalctl", "--no-pager", "-o", "cat", "_PID=1").stdout.count(
            "Startup finished in ")
        assert starts == 2, starts
        assert host.exec("cat", "/proc/sys/kernel/random/boot_id").stdout == boot_id
        assert boot_id.strip() == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    finally:
        remove_testhost(host)


def leftovers(marker: str) -> dict[str, set[str]]:
    """What a test host could leave on this machine, restricted to what can be recognised as its."""
    mounts = {line for line in Path("/proc/self/mountinfo").read_text().splitlines() if marker in line}
    # v1: one in every hierarchy; v2: one at the top of the unified tree
    cgroups = {str(p) for h in [CGROUP_FS, *CGROUP_FS.iterdir()] for p in h.glob(f"sdctr-testhost-{marker}*")}
    loops = set(subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout.splitlines())
    return {"mounts": mounts, "cgroups": cgroups, "loops": loops,
            "dirs": {str(p) for p in HOSTS.glob(f"{marker}*")} if HOSTS.exists() else set()}


def namespaces_of(pid: int) -> set[str]:
    return {os.readlink(f"/proc/{pid}/ns/{ns}") for ns in ("pid", "mnt", "net", "uts", "ipc", "cgroup")}


def namespaces_in_use() -> set[str]:
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            for ns in ("pid", "mnt", "net", "uts", "ipc", "cgroup"):
                try:
                    found.add(os.readlink(proc / "ns" / ns))
                except OSError:
                    pass
    return found


def test_several_hosts_run_at_once_and_down_leaves_nothing() -> None:
    marker = f"gone{os.getpid()}"
    before = leftovers(marker)
    hosts = [boot_testhost(name=f"{marker}-{i}") for i in range(2)]
    try:
        # Two machines, each with its own hostname, process tree and state directory.
        for i, host in enumerate(hosts):
            assert host.exec("hostname").stdout.strip() == f"{marker}-{i}"
            host.exec("sh", "-c", f"echo {i} > /var/lib/sdctr/who")
        assert [h.exec("cat", "/var/lib/sdctr/who").stdout for h in hosts] == ["0\n", "1\n"]
        # Give the second one everything down must remove: units with processes and cgroups,
        # loop devices on its overlay and on its bind-mounted state, a pinned network namespace.
        busy = hosts[1]
        busy.exec("systemd-run", "--unit=busy", "-p", "MemoryLimit=50M", "sleep", "1000")
        busy.exec("sh", "-c", "truncate -s 8M /root/a /var/lib/sdctr/b && "
                  "losetup -f /root/a && losetup -f /var/lib/sdctr/b && ip netns add pinned")
        assert len(leftovers(marker)["loops"] - before["loops"]) == 2
        state = busy.state()
        pids = [state["init_pid"], state["unshare_pid"]]
        spaces = namespaces_of(state["init_pid"])
    finally:
        for host in hosts:
            remove_testhost(host)
    assert leftovers(marker) == before
    # unshare was reparented to the machine's init when `up` returned; init reaps it
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in pids), what="the host's processes to go")
    assert not spaces & namespaces_in_use()
