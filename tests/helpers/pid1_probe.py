"""A static C probe of the container's PID 1 against CVE-2019-5736's class (issue 10), shared by
the host tier (tests/host/test_init.py, the Python fallback) and the test host
(tests/testhost/test_pid1_exe.py, the static reaper under systemd). Static: it runs in a busybox
root without a libc of its own."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from . import skip_or_fail

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

F_SEALS = {"F_SEAL_SEAL": 1, "F_SEAL_SHRINK": 2, "F_SEAL_GROW": 4, "F_SEAL_WRITE": 8}
ALL_SEALS = sum(F_SEALS.values())
# what a write of /proc/1/exe may fail with: ETXTBSY while PID 1 runs it, EPERM from the seals on
# a kernel that lets the open through; never "0" (the write went through)
WRITE_REFUSED = ("26", "1")
WRITES = ("open-write", "reopen-write")


def build_probe(work: Path) -> Path:
    """Compiles the probe in `work`; skips (fails under SDCTR_TESTS_STRICT) without gcc and a
    static libc."""
    gcc = shutil.which("gcc")
    if gcc is None or not list(Path("/usr/lib").glob("*/libc.a")):
        skip_or_fail("needs gcc and a static libc (Debian: gcc libc6-dev) for the /proc/1/exe probe")
    (work / "probe.c").write_text(PROBE_C)
    subprocess.run([gcc, "-static", "-O2", "-o", str(work / "probe"), str(work / "probe.c")], check=True)
    return work / "probe"


def parse_probe(stdout: str) -> dict[str, str]:
    """The probe's lines as {step: value}."""
    return dict(line.split(" ", 1) for line in stdout.splitlines())
