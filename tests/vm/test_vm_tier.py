"""The VM tier is real: a Debian kernel with dm-thin, the cgroup version asked for, this checkout's
sdctr, memory limits the kernel enforces; and the harness keeps its promises (exit status passes
through, a timeout or an interrupt leaves nothing behind).

A boot costs about 30 s under emulation, so each cgroup version boots once: payloads/tier-check.sh
checks everything inside and reports "FACT name=value" lines that the tests below assert on.
Skipping (not root, no qemu) is conftest.py's job, so SDCTR_TESTS_STRICT=1 can turn it into a
failure.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, checkout_version

pytestmark = pytest.mark.vm

HERE = Path(__file__).resolve().parent
VM = HERE / "vm"
TIER_CHECK = HERE / "payloads/tier-check.sh"
TESTHOST_CHECK = HERE / "payloads/testhost-check.sh"
TESTHOST = REPO / "tests/testhost/testhost"
# The testhost tier's tests that run in the v2 VM: all but the ones that read v1 file names
# (test_unit_limits_reach_the_kernel) or need the trixie root too. Each boots in ~40 s there.
TESTHOST_SMOKE = ("test_boot_reaches_running_with_this_checkout", "test_memory_limit_is_enforced",
                  "test_journal_shows_a_units_lines", "test_exec_passes_status_and_stdio_through",
                  "test_cp_copies_files_and_directories", "test_reboot_keeps_the_root_and_boots_again",
                  "test_several_hosts_run_at_once_and_down_leaves_nothing")
# The other testhost files' tests whose code path exists only on cgroup v2, where no other tier
# runs them (this machine's test host is v1 or hybrid): pause by systemd's FreezeUnit/ThawUnit;
# the container's own /sys/fs/cgroup and `stats` read from v2's file names (issue 14).
# Each runs twice, with transient units and with unit files.
TESTHOST_V2_ONLY = {
    "tests/testhost/test_manage.py": ("test_pause_freezes_every_process_and_unpause_resumes_them",),
    "tests/testhost/test_daily.py": ("test_sys_fs_cgroup_is_the_containers_own_cgroup_read_only",
                                     "test_stats_shows_cpu_network_and_block_io"),
}
HARNESS_FAILED = 125
# What a payload asks the VM to exit with, per boot: one non-zero, one zero, so a harness that
# always answered the same could not pass both.
EXIT_STATUS = {"v1": 7, "v2": 0}


class Boot(str):
    """One VM run: its cgroup version, exit status, output and FACT lines. It is also its own
    report, a str of the output's last lines (where a payload's error is): pytest prints a str
    assert message whole, up to pyproject's truncation limits, but cuts an object's repr to 240
    characters, so `assert ..., boot` shows what went wrong in CI's log."""

    cgroup: str
    status: int
    stdout: str
    stderr: str
    facts: dict[str, str]

    def __new__(cls, cgroup: str, status: int, stdout: str, stderr: str, facts: dict[str, str]) -> Boot:
        def tail(text: str, n: int) -> str:
            lines = text.splitlines()
            return "\n".join((["..."] if len(lines) > n else []) + lines[-n:])
        report = (f"VM boot (cgroup {cgroup}), status {status}\n--- stdout, last lines:\n"
                  f"{tail(stdout, 60)}\n--- stderr, last lines:\n{tail(stderr, 15)}")
        self = super().__new__(cls, report)
        self.cgroup, self.status, self.stdout, self.stderr, self.facts = cgroup, status, stdout, stderr, facts
        return self

    def fact(self, name: str) -> str:
        if name not in self.facts:
            raise AssertionError(f"the payload reported no {name!r} (cgroup {self.cgroup})\n{self}")
        return self.facts[name]


def parse_facts(output: str) -> dict[str, str]:
    return dict(m.groups() for m in re.finditer(r"^FACT (\w+)=(.*)$", output, re.MULTILINE))


@pytest.fixture(scope="module", params=["v1", "v2"], ids=["cgroup-v1", "cgroup-v2"])
def boot(request: pytest.FixtureRequest) -> Boot:
    """One boot per cgroup version, shared by every test of this module."""
    cgroup = request.param
    r = subprocess.run([str(VM), "run", "--cgroup", cgroup, "--timeout", "600", str(TIER_CHECK),
                        str(EXIT_STATUS[cgroup])],
                       capture_output=True, text=True, timeout=3600)  # a cold image build included
    result = Boot(cgroup, r.returncode, r.stdout, r.stderr, parse_facts(r.stdout))
    if r.returncode == HARNESS_FAILED or result.facts.get("done") != "yes":
        raise AssertionError(f"the VM run did not complete\n{result}")
    return result


def test_exit_status_passes_through(boot: Boot) -> None:
    assert boot.status == EXIT_STATUS[boot.cgroup], boot


def test_system_is_booted_by_systemd(boot: Boot) -> None:
    assert boot.fact("systemd").startswith("systemd 252 "), boot
    assert boot.fact("system_state") == "running", boot


def test_thin_pool_target_is_loaded(boot: Boot) -> None:
    assert boot.fact("thin_pool_target") == "listed", boot


def test_cgroup_version_is_the_one_asked_for(boot: Boot) -> None:
    if boot.cgroup == "v2":
        assert boot.fact("cgroup_fstype") == "cgroup2", boot
        assert boot.fact("cgroup_v1_hierarchies") == "", boot
    else:  # RHEL7's layout: a tmpfs of v1 hierarchies, and no cgroup2 anywhere
        assert boot.fact("cgroup_fstype") == "tmpfs", boot
        hierarchies = boot.fact("cgroup_v1_hierarchies").split()
        for controller in ("memory", "cpu,cpuacct", "pids", "systemd"):
            assert controller in hierarchies, boot
        assert boot.fact("cgroup2_mounts") == "", boot


def test_sdctr_is_this_checkout(boot: Boot) -> None:
    assert boot.fact("sdctr_version") == f"sdctr version {checkout_version()}", boot


def test_thin_snapshot_reads_back_and_is_copy_on_write(boot: Boot) -> None:
    assert boot.fact("thin_snapshot_reads") == "origin-data", boot
    assert boot.fact("thin_origin_after_snapshot_write") == "origin-data", boot


def test_memory_limit_is_enforced_by_the_oom_killer(boot: Boot) -> None:
    limit = {"v1": "MemoryLimit", "v2": "MemoryMax"}[boot.cgroup]
    assert boot.fact("oom_limit_property") == limit, boot
    assert boot.fact("oom_limit_value") == str(30 * 1024 * 1024), boot
    assert boot.fact("oom_run_status") != "0", boot  # systemd-run --wait failed
    assert boot.fact("oom_main_exit") == "ExecMainCode=2 ExecMainStatus=9", boot  # killed, SIGKILL
    # The kernel's OOM report names the unit's own memory cgroup: its limit, not the VM's, fired.
    assert boot.fact("oom_memcg") == "/system.slice/tier-oom.service", boot
    # systemd 252 learns of an OOM kill from cgroup v2's memory.events only; on v1 it sees a
    # process killed by SIGKILL and says so.
    assert boot.fact("oom_result") == {"v1": "signal", "v2": "oom-kill"}[boot.cgroup], boot


def test_sdctr_limits_reach_the_kernel_under_either_cgroup_version(boot: Boot) -> None:
    """-c 512 -m 64m --cpus 0.5 --pids-limit 64: CPUShares/MemoryLimit on v1, CPUWeight (runc's
    conversion: 512 -> 59)/MemoryMax on v2, read back from the unit's own cgroup files."""
    assert boot.fact("run_memory") == str(64 * 1024 * 1024), boot
    assert boot.fact("run_cpu") == {"v1": "512", "v2": "59"}[boot.cgroup], boot
    assert boot.fact("run_cpu_max") == {"v1": "50000", "v2": "50000 100000"}[boot.cgroup], boot
    assert boot.fact("run_pids") == "64", boot


def test_sdctr_container_past_its_memory_limit_is_oom_killed(boot: Boot) -> None:
    assert boot.fact("run_oom_status") == "137", boot
    assert boot.fact("run_oom_wait") == "137", boot
    assert boot.fact("run_oom_killed") == "true", boot


def test_a_container_cannot_read_the_vms_disk(boot: Boot) -> None:
    """Issue 10, under either cgroup version (v2: systemd's BPF device program): root in a
    container reads the disk neither through a node it made nor through its image's 0666 node;
    --device opens its own node and no other; --privileged opens every one, as Docker's."""
    assert boot.fact("disk_node").split()[1].count(":") == 1, boot
    assert boot.fact("disk_read_on_host") == "read", boot  # the probe itself works
    eperm = "/tmp/d: Operation not permitted"
    assert boot.fact("disk_read_mknod") == eperm, boot
    assert boot.fact("disk_read_image_node") == "/disk: Operation not permitted", boot
    assert boot.fact("device_read") == f"LOOP-MARKER-VM {eperm}", boot
    assert boot.fact("privileged_read") == "read", boot


def test_a_published_port_answers_under_either_cgroup_version(boot: Boot) -> None:
    """Issue 11: -p 8080:80 to busybox httpd answers through 127.0.0.1 with the nftables rules
    in place (one element carrying the container's id), and rm -f leaves no element."""
    assert boot.fact("port_page") == "vm-page", boot
    assert boot.fact("port_elements") == "1", boot
    assert boot.fact("port_elements_after_rm") == "0", boot


# --- the test host on a cgroup v2 machine ------------------------------------------------------

@pytest.fixture(scope="module")
def testhost_v2() -> Boot:
    """One boot with cgroup v2, as a stock Debian 12 has: tests/testhost/testhost run inside
    (payloads/testhost-check.sh), then the testhost tier's smoke tests by pytest. The VM has no
    network, so the test host's debootstrapped root, this checkout and pytest are shared into it,
    read-only, each where the code inside looks for it."""
    root = subprocess.run([str(TESTHOST), "build"], capture_output=True, text=True, check=True,
                          timeout=3600).stdout.strip()
    site = Path(pytest.__file__).resolve().parents[1]  # pytest and what it imports
    r = subprocess.run([str(VM), "run", "--cgroup", "v2", "--timeout", "1800",
                        "--share", f"{REPO}:/mnt/checkout", "--share", f"{root}:{root}",
                        "--share", f"{site}:/mnt/pytest-site", str(TESTHOST_CHECK),
                        "/mnt/checkout", "/mnt/pytest-site", *TESTHOST_V2_ONLY,
                        "-k", " or ".join(TESTHOST_SMOKE + sum(TESTHOST_V2_ONLY.values(), ()))],
                       capture_output=True, text=True, timeout=3600)
    result = Boot("v2", r.returncode, r.stdout, r.stderr, parse_facts(r.stdout))
    if r.returncode == HARNESS_FAILED or result.facts.get("up_status") is None:
        raise AssertionError(f"the VM run did not complete\n{result}")
    return result


def test_test_host_boots_with_a_delegated_cgroup_v2_tree(testhost_v2: Boot) -> None:
    assert testhost_v2.fact("vm_cgroup_fstype") == "cgroup2", testhost_v2
    assert testhost_v2.fact("up_status") == "0", testhost_v2
    assert testhost_v2.fact("inner_cgroup_fstype") == "cgroup2", testhost_v2
    assert testhost_v2.fact("inner_system_state") == "running", testhost_v2
    # systemd inside enabled cpu and io at boot (testhost's hold_controllers), in the test host's
    # cgroup, where the VM's systemd cannot disable them on the root from under it
    for controller in ("cpu", "io", "memory", "pids"):
        assert controller in testhost_v2.fact("vm_testhost_subtree_control").split(), testhost_v2


def test_sdctr_limits_in_a_test_host_on_cgroup_v2(testhost_v2: Boot) -> None:
    """sdctr inside sees v2 (MemoryMax, CPUWeight); the limit is in the VM's own tree, under the
    test host's cgroup, so the VM's kernel enforces it."""
    assert testhost_v2.fact("run_status") == "0", testhost_v2
    assert testhost_v2.fact("unit_status_rc") == "0", testhost_v2
    assert testhost_v2.fact("unit_active") == "active", testhost_v2
    assert testhost_v2.fact("unit_memory_max") == str(64 * 1024 * 1024), testhost_v2
    assert testhost_v2.fact("vm_memory_max") == str(64 * 1024 * 1024), testhost_v2
    assert testhost_v2.fact("unit_cpu_weight") == "59", testhost_v2  # -c 512, runc's conversion


def test_systemctl_status_in_a_test_host_on_cgroup_v2(testhost_v2: Boot) -> None:
    assert testhost_v2.fact("system_status_rc") == "0", testhost_v2
    assert testhost_v2.fact("system_status_state") == "running", testhost_v2


def test_container_past_its_limit_in_a_test_host_on_cgroup_v2_is_oom_killed(testhost_v2: Boot) -> None:
    assert testhost_v2.fact("oom_wait") == "137", testhost_v2
    assert testhost_v2.fact("oom_killed") == "true", testhost_v2
    # the VM kernel's own OOM report names the container's cgroup under the test host's
    assert testhost_v2.fact("oom_memcg") == testhost_v2.fact("oom_unit"), testhost_v2


def test_test_host_down_on_cgroup_v2_leaves_no_cgroup(testhost_v2: Boot) -> None:
    assert testhost_v2.fact("down_status") == "0", testhost_v2
    assert testhost_v2.fact("leftover_cgroups") == "", testhost_v2


def test_auto_picks_overlay_in_a_test_host_on_a_kernel_with_dm_thin(testhost_v2: Boot) -> None:
    """The VM's kernel has dm-thin, and the test host has the VM's /dev, but device-mapper is not
    namespaced: a pool made there would be the VM kernel's (and its mounts failed). auto takes
    overlay in a container and says why."""
    driver, _, why = testhost_v2.fact("testhost_driver").partition(": ")
    assert driver == "overlay", testhost_v2
    assert why == "auto: this is a container (/run/systemd/container): device-mapper is the host kernel's, " \
                  "not the container's", testhost_v2


def test_demo_on_cgroup_v2(testhost_v2: Boot) -> None:
    """./demo, as the README has a user run it on a stock Debian 12: CPUWeight and MemoryMax."""
    assert testhost_v2.fact("demo_status") == "0", testhost_v2
    assert testhost_v2.fact("demo_limits") == f"59 {64 * 1024 * 1024}", testhost_v2


def test_testhost_tier_smoke_tests_pass_on_cgroup_v2(testhost_v2: Boot) -> None:
    assert testhost_v2.fact("pytest_status") == "0", testhost_v2
    for name in TESTHOST_SMOKE:
        assert f"::{name} PASSED" in testhost_v2.stdout, (name, testhost_v2)


def assert_passed_in_both_modes(boot: Boot, path: str) -> None:
    assert boot.fact("pytest_status") == "0", boot
    for name in TESTHOST_V2_ONLY[path]:
        for mode in ("transient", "unit-file"):
            assert f"::{name}[{mode}] PASSED" in boot.stdout, (name, mode, boot)


def test_pause_by_systemds_freezeunit_on_cgroup_v2(testhost_v2: Boot) -> None:
    """`sdctr pause` where systemd freezes the unit (FreezeUnit, v246 on, cgroup v2): the kernel's
    cgroup.freeze reads 1, the processes stop, unpause resumes them, stop thaws first."""
    assert_passed_in_both_modes(testhost_v2, "tests/testhost/test_manage.py")


def test_own_cgroup_and_stats_on_cgroup_v2(testhost_v2: Boot) -> None:
    """Inside, /sys/fs/cgroup is the container's own v2 cgroup, read-only (memory.max, pids.max);
    `stats` reads CPU, network and block I/O from v2's cpu.stat and io.stat."""
    assert_passed_in_both_modes(testhost_v2, "tests/testhost/test_daily.py")


# --- the harness leaves nothing behind ----------------------------------------------------------

def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if any(text.encode() in a for a in args):
            found.append(b" ".join(args).decode(errors="replace"))
    return found


@pytest.fixture
def run_tmpdir(tmp_path: Path) -> Iterator[Path]:
    """The runs' temporary directories go here (TMPDIR), so what they leave is ours to see."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    yield tmp
    assert processes_mentioning(str(tmp)) == [], "a process of the run outlived it"
    assert list(tmp.iterdir()) == [], "the run left files behind"


def remove_kept_console_log(stderr: str) -> None:
    match = re.search(r"console log: (\S+)", stderr)
    assert match, stderr
    kept = Path(match.group(1))
    assert kept.is_file(), stderr
    kept.unlink()


def test_timeout_is_a_harness_failure_and_kills_qemu(run_tmpdir: Path) -> None:
    subprocess.run([str(VM), "build"], check=True, capture_output=True, timeout=3600)
    started = time.monotonic()
    r = subprocess.run([str(VM), "run", "--timeout", "5", str(TIER_CHECK)], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "TMPDIR": str(run_tmpdir)})
    assert r.returncode == HARNESS_FAILED, r
    assert "timed out after 5 s" in r.stderr, r.stderr
    assert time.monotonic() - started < 30
    remove_kept_console_log(r.stderr)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_kills_qemu(run_tmpdir: Path, signum: signal.Signals) -> None:
    subprocess.run([str(VM), "build"], check=True, capture_output=True, timeout=3600)
    proc = subprocess.Popen([str(VM), "run", str(TIER_CHECK)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(run_tmpdir)})
    deadline = time.monotonic() + 30
    while not processes_mentioning(str(run_tmpdir)) and time.monotonic() < deadline:
        time.sleep(0.2)  # until qemu runs: its command line names the share under TMPDIR
    assert processes_mentioning(str(run_tmpdir)), "qemu did not start"
    time.sleep(2)  # well into the boot
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr, stderr
