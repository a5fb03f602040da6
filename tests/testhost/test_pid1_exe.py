"""The container's PID 1 against its own root (issue 10, CVE-2019-5736's class): /proc/1/exe is
the reaper's binary, and a container root that can write it, or keep a descriptor of it until
no running process protects it with ETXTBSY, rewrites what the host runs next. It must be a
sealed anonymous copy: no host path behind it, writes refused by its seals for good."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import skip_or_fail
from helpers.rootfs import BUSYBOX_ROOTFS_SH
from helpers.testhost import Machine

pytestmark = pytest.mark.testhost

# One line per step, from inside the container as its root: where /proc/1/exe leads, the seals
# of what it opens (F_GET_SEALS; -errno where it is no memfd), and the errno of each way to write
# it (0: the write went through).
PROBE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#ifndef F_GET_SEALS
#define F_GET_SEALS 1034
#endif

static int write_errno(int fd) {
    if (fd < 0) return errno;
    int r = write(fd, "X", 1) < 0 ? errno : 0;
    if (r == 0) r = ftruncate(fd, 0) < 0 ? errno : 0;
    close(fd);
    return r;
}

int main(void) {
    char link[4096], via[64];
    ssize_t n = readlink("/proc/1/exe", link, sizeof link - 1);
    link[n < 0 ? 0 : n] = 0;
    printf("exe %s\n", link);
    int fd = open("/proc/1/exe", O_RDONLY | O_CLOEXEC);
    int seals = fd < 0 ? -errno : fcntl(fd, F_GET_SEALS);
    printf("seals %d\n", seals < 0 && fd >= 0 ? -errno : seals);
    if (fd >= 0) close(fd);
    printf("open-write %d\n", write_errno(open("/proc/1/exe", O_WRONLY | O_CLOEXEC)));
    /* CVE-2019-5736's way: an O_PATH descriptor, reopened for writing through /proc/self/fd */
    int path = open("/proc/1/exe", O_PATH | O_CLOEXEC);
    snprintf(via, sizeof via, "/proc/self/fd/%d", path);
    printf("reopen-write %d\n", path < 0 ? errno : write_errno(open(via, O_RDWR | O_CLOEXEC)));
    return 0;
}
"""

MAKE_IMAGE = r"""
set -e
rm -rf /tmp/bb-pid1 && sh -s /tmp/bb-pid1 < /tmp/busybox-rootfs.sh
cp /tmp/pid1-probe /tmp/bb-pid1/probe
tar -C /tmp/bb-pid1 -cf /tmp/bb-pid1.tar .
sdctr import /tmp/bb-pid1.tar pid1-probe >/dev/null
rm -rf /tmp/bb-pid1 /tmp/bb-pid1.tar
"""

F_SEALS = {"F_SEAL_SEAL": 1, "F_SEAL_SHRINK": 2, "F_SEAL_GROW": 4, "F_SEAL_WRITE": 8}


@pytest.fixture(scope="module")
def host(testhost: Machine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    """The session's test host with an image holding the static probe at /probe."""
    gcc = shutil.which("gcc")
    if gcc is None or not list(Path("/usr/lib").glob("*/libc.a")):
        skip_or_fail("needs gcc and a static libc (Debian: gcc libc6-dev) for the /proc/1/exe probe")
    work = tmp_path_factory.mktemp("pid1")
    (work / "probe.c").write_text(PROBE_C)
    subprocess.run([gcc, "-static", "-O2", "-o", str(work / "probe"), str(work / "probe.c")], check=True)
    testhost.cp(BUSYBOX_ROOTFS_SH, "/tmp/busybox-rootfs.sh")
    testhost.cp(work / "probe", "/tmp/pid1-probe")
    testhost.sh(MAKE_IMAGE)
    yield testhost
    testhost.exec("sdctr", "image", "rm", "pid1-probe", check=False)


def probe(host: Machine, *flags: str) -> dict[str, str]:
    r = host.exec("sdctr", "run", "--rm", *flags, "pid1-probe", "/probe")
    return dict(line.split(" ", 1) for line in r.stdout.splitlines())


@pytest.mark.parametrize("flags", [(), ("--privileged",)], ids=["default", "privileged"])
def test_pid1_exe_is_a_sealed_copy_the_container_cannot_write(host: Machine, flags: tuple[str, ...]) -> None:
    """Root in the container opens /proc/1/exe (the host's tini-static before the fix, behind a
    read-only bind: only ETXTBSY and that mount's flag guarded it) and tries to write it,
    directly and through an O_PATH descriptor as CVE-2019-5736's exploit did.
    The host's reaper is unchanged, /proc/1/exe names no host file, and what it opens carries
    every seal, so a descriptor kept past PID 1's exit cannot write it either.
    --privileged too: all capabilities, yet nothing to remount or unseal."""
    reaper = "/usr/bin/tini-static"
    before = host.exec("sha256sum", reaper).stdout
    seen = probe(host, *flags)
    assert host.exec("sha256sum", reaper).stdout == before
    # no host path (before: "/", the host's file through a detached read-only bind of it)
    assert seen["exe"] == "/memfd:tini-static (deleted)", seen
    assert int(seen["seals"]) == sum(F_SEALS.values()), seen  # before: -22 (EINVAL: no memfd)
    # ETXTBSY while PID 1 runs it; EPERM from the seals on a kernel that lets the open through
    for way in ("open-write", "reopen-write"):
        assert seen[way] in ("26", "1"), (way, seen)  # ETXTBSY, EPERM: never 0
