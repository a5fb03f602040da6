"""--device and --privileged under a real systemd, checked as a user would: what the container can
read through a node, and what the kernel refuses it (issue 10). Loop devices over files of ours
stand in for the host's disks; the test host's /dev is the machine's, so it sees them."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import docker
from helpers.rootfs import BUSYBOX_ROOTFS_SH
from helpers.testhost import Machine

pytestmark = pytest.mark.testhost

IMAGE = "busybox-devices"


@pytest.fixture(scope="module")
def host(testhost: Machine) -> Iterator[Machine]:
    testhost.exec("sh", "-c", "rm -rf /tmp/bb-dev && sh -s /tmp/bb-dev", input=BUSYBOX_ROOTFS_SH.read_text())
    testhost.sh(f"tar -C /tmp/bb-dev -cf /tmp/bb-dev.tar . && sdctr import /tmp/bb-dev.tar {IMAGE}")
    yield testhost


@pytest.fixture
def disks(tmp_path: Path) -> Iterator[list[tuple[str, int, int]]]:
    """Three loop devices, each over a file that starts with its own marker: (path, major, minor)."""
    made: list[tuple[str, int, int]] = []
    try:
        for marker in ("DISK-A-SECRET", "DISK-B-SECRET", "DISK-C-SECRET"):
            backing = tmp_path / marker
            backing.write_bytes(marker.encode() + b"\0" * (1 << 20))
            loop = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True,
                                  text=True, check=True).stdout.strip()
            rdev = os.stat(loop).st_rdev
            made.append((loop, os.major(rdev), os.minor(rdev)))
        yield made
    finally:
        for loop, _, _ in made:
            subprocess.run(["losetup", "-d", loop], check=False)


@pytest.mark.parametrize("mode", ["transient", "unit-file"])
def test_device_opens_that_node_and_no_other(host: Machine, disks: list[tuple[str, int, int]],
                                             mode: str) -> None:
    (a, _, _), (b, _, _), (_, c_major, c_minor) = disks
    flags = ["--unit-file-mode"] if mode == "unit-file" else []
    script = ("head -c 13 /dev/disk-a; echo; "
              # read-only access: the device cgroup refuses a write, whatever the node's mode
              "head -c 13 /dev/ro-b; echo; (echo x > /dev/ro-b) 2>&1; "
              f"mknod /tmp/c b {c_major} {c_minor} && echo made; head -c 13 /tmp/c 2>&1; echo")
    r = host.exec("sdctr", *flags, "run", "--rm", "--device", f"{a}:/dev/disk-a",
                  "--device", f"{b}:/dev/ro-b:r", IMAGE, "sh", "-c", script, check=False)
    out = r.stdout + r.stderr
    assert "DISK-A-SECRET\nDISK-B-SECRET\n" in r.stdout, out
    assert "made" in r.stdout and "DISK-C-SECRET" not in out, out
    assert r.stdout.count("Operation not permitted") == 2, out  # the write to ro-b, the read of c


def test_device_of_a_file_is_one_line_and_125(host: Machine) -> None:
    r = host.exec("sdctr", "run", "--rm", "--device", "/etc/passwd", IMAGE, "true", check=False)
    assert r.returncode == 125, r
    assert r.stderr.count("\n") == 1 and "/etc/passwd: not a device node" in r.stderr, r.stderr
    assert host.exec("sdctr", "ps", "-aq").stdout == ""  # nothing was made


def test_privileged_reaches_every_device_with_every_capability(host: Machine,
                                                               disks: list[tuple[str, int, int]]) -> None:
    (_, major, minor), (b, _, _), _ = disks
    # every capability the test host holds (itself a container: fewer than the kernel knows)
    held = int(host.sh("grep ^CapBnd /proc/self/status").stdout.split()[1], 16)
    assert held != docker.DEFAULT_CAPS_MASK and held & docker.DEFAULT_CAPS_MASK == docker.DEFAULT_CAPS_MASK
    script = (f"mknod /tmp/a b {major} {minor} && head -c 13 /tmp/a; echo; "
              f"head -c 13 {b}; echo; grep ^CapEff /proc/self/status; "
              "grep -c '^Seccomp:.*0' /proc/self/status; test -w /proc/sys && echo sys-writable")
    r = host.exec("sdctr", "run", "--rm", "--privileged", IMAGE, "sh", "-c", script, check=False)
    out = r.stdout + r.stderr
    assert "DISK-A-SECRET" in r.stdout and "DISK-B-SECRET" in r.stdout, out  # mknod'ed, and the host's node
    cap_eff = next(line for line in r.stdout.splitlines() if line.startswith("CapEff"))
    assert int(cap_eff.split()[1], 16) == held, out
    assert "\n1\n" in r.stdout and "sys-writable" in r.stdout, out  # no seccomp, no read-only /proc/sys


def test_exec_in_a_privileged_container_keeps_its_privileges(host: Machine) -> None:
    cid = host.exec("sdctr", "run", "-d", "--privileged", IMAGE, "sleep", "1000").stdout.strip()
    try:
        inside = host.exec("sdctr", "exec", cid, "grep", "-E", "^(CapEff|Seccomp):",
                           "/proc/self/status").stdout
        held = host.sh("grep ^CapBnd /proc/self/status").stdout.split()[1]
        assert inside.split() == ["CapEff:", held, "Seccomp:", "0"], inside
    finally:
        host.exec("sdctr", "rm", "-f", cid)
