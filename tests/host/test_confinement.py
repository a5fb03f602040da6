"""Attacks from inside a container that the confinement must stop, one test each: syscalls that
Docker's seccomp profile refuses (run by a static C probe copied into the busybox root), masked
/proc and /sys files, the cgroup namespace, and read-only volumes with submounts."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import skip_or_fail
from helpers.rootfs import build_busybox_rootfs
from test_init import Containers

from sdctr.init import seccomp
from sdctr.init.standard import thermal_throttle_paths
from sdctr.spec import DEFAULT_CAPS, Mount

pytestmark = pytest.mark.host

PROBE_C = r"""
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* One line per attempt: its name and the errno it failed with (0: it worked). */
static void report(const char *name, long r) { printf("%s %d\n", name, r < 0 ? errno : 0); }

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *what = argv[i];
        char params[120];
        memset(params, 0, sizeof params);
        errno = 0;
        if (!strcmp(what, "io_uring_setup")) report(what, syscall(425, 1L, params));
        else if (!strcmp(what, "vsock")) report(what, syscall(SYS_socket, 40L, 1L, 0L));
        /* the kernel reads the family as an int: 0x1_00000028 is AF_VSOCK too */
        else if (!strcmp(what, "vsock-high-bits")) report(what, syscall(SYS_socket, 0x100000028L, 1L, 0L));
        else if (!strcmp(what, "unix")) report(what, syscall(SYS_socket, 1L, 1L, 0L));
        /* statmount(2), Linux 6.8: newer than the profile */
        else if (!strcmp(what, "statmount")) report(what, syscall(457, 0L, 0L, 0L, 0L));
        else if (!strcmp(what, "personality-query")) report(what, syscall(SYS_personality, 0xffffffffL));
        /* ADDR_NO_RANDOMIZE: turns ASLR off for what the container runs next */
        else if (!strcmp(what, "personality-no-aslr")) report(what, syscall(SYS_personality, 0x0040000L));
        else if (!strcmp(what, "keyctl")) report(what, syscall(SYS_keyctl, 0L, 0L));
        else { printf("%s unknown\n", what); return 2; }
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox root with the probe at /probe."""
    gcc = shutil.which("gcc")
    if gcc is None or not list(Path("/usr/lib").glob("*/libc.a")):
        skip_or_fail("needs gcc and a static libc (Debian: gcc libc6-dev) for the syscall probe")
    work = tmp_path_factory.mktemp("confinement")
    root = build_busybox_rootfs(work / "root")
    (work / "probe.c").write_text(PROBE_C)
    subprocess.run([str(gcc), "-static", "-O2", "-o", str(root / "probe"), str(work / "probe.c")],
                   check=True)
    return root


@pytest.fixture
def ctr(tmp_path: Path, rootfs: Path) -> Iterator[Containers]:
    c = Containers(tmp_path, rootfs, "tini")
    try:
        yield c
    finally:
        c.close()


def probe(ctr: Containers, *attempts: str, caps: tuple[str, ...] = DEFAULT_CAPS) -> dict[str, int]:
    out = ctr.sh("/probe " + " ".join(attempts), capabilities=caps)
    return {name: int(err) for name, err in (line.split() for line in out.splitlines())}


# --- seccomp -------------------------------------------------------------------------------------

def test_io_uring_is_refused(ctr: Containers) -> None:
    assert probe(ctr, "io_uring_setup") == {"io_uring_setup": errno.EPERM}


def test_vsock_sockets_are_refused_other_sockets_are_not(ctr: Containers) -> None:
    assert probe(ctr, "vsock", "vsock-high-bits", "unix") == {
        "vsock": errno.EPERM, "vsock-high-bits": errno.EPERM, "unix": 0}


def test_a_syscall_newer_than_the_profile_is_not_implemented(ctr: Containers) -> None:
    # ENOSYS, not EPERM: a C library then falls back to the older call it knows
    assert probe(ctr, "statmount", "keyctl") == {"statmount": errno.ENOSYS, "keyctl": errno.EPERM}


def test_personality_takes_only_dockers_values(ctr: Containers) -> None:
    assert probe(ctr, "personality-query", "personality-no-aslr") == {
        "personality-query": 0, "personality-no-aslr": errno.EPERM}


def test_clone3_is_not_implemented_without_cap_sys_admin(ctr: Containers) -> None:
    # glibc's fork and pthread_create fall back to clone(2), whose flags the filter can read
    assert ctr.sh("sh -c 'echo child' & wait") == "child\n"


def test_unresolvable_names_are_refused_not_skipped() -> None:
    seccomp_names = seccomp.ALLOWED
    try:
        seccomp.ALLOWED = (*seccomp_names, "no_such_syscall")
        f = seccomp.Filter(DEFAULT_CAPS)
    finally:
        seccomp.ALLOWED = seccomp_names
    assert f.unresolved == ["no_such_syscall"]


# --- masked paths, namespaces --------------------------------------------------------------------

MASKED_HERE = [p for p in ("/proc/interrupts", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                           "/sys/firmware", "/sys/devices/virtual/powercap") if os.path.exists(p)]


@pytest.mark.parametrize("path", MASKED_HERE)
def test_masked_paths_show_nothing(ctr: Containers, path: str) -> None:
    listing = "ls -A" if os.path.isdir(path) else "cat"
    assert ctr.sh(f"{listing} {path}") == ""


def test_every_cpus_thermal_throttle_is_masked(tmp_path: Path) -> None:
    for name in ("cpu0", "cpu12", "cpufreq", "cpuidle"):
        (tmp_path / name).mkdir()
    assert thermal_throttle_paths(str(tmp_path)) == [
        f"{tmp_path}/cpu0/thermal_throttle", f"{tmp_path}/cpu12/thermal_throttle"]


def test_proc_self_cgroup_shows_the_namespace_root(ctr: Containers) -> None:
    lines = ctr.sh("cat /proc/self/cgroup").splitlines()
    assert lines
    assert all(line.split(":", 2)[2] == "/" for line in lines), lines


def test_a_read_only_volume_is_read_only_in_its_submounts(ctr: Containers, tmp_path: Path) -> None:
    source = tmp_path / "vol"
    (source / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "sub", str(source / "sub")], check=True)
    try:
        out = ctr.sh("touch /data/top 2>/dev/null && echo top-writable;"
                     "touch /data/sub/x 2>/dev/null && echo sub-writable; echo done",
                     mounts=(Mount(str(source), "/data", readonly=True),))
        assert out.split() == ["done"]
        assert not (source / "sub/x").exists()
    finally:
        subprocess.run(["umount", "-l", str(source / "sub")], check=False)


def test_without_mount_setattr_each_submount_is_remounted(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels before 5.12: the fallback, run in a child's own mount namespace."""
    from sdctr import linux
    from sdctr.init import standard

    def enosys(fd: int, attr: int) -> None:
        raise OSError(errno.ENOSYS, "mount_setattr: Function not implemented")

    monkeypatch.setattr(linux, "mount_setattr_recursive", enosys)
    source, target = tmp_path / "src", tmp_path / "dst"
    (source / "sub").mkdir(parents=True)
    target.mkdir()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            linux.unshare(linux.CLONE_NEWNS)
            linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
            linux.mount("sub", str(source / "sub"), "tmpfs", 0, "size=1m")
            linux.mount(str(source), str(target), None, linux.MS_BIND | linux.MS_REC)
            standard.remount_readonly_recursive(str(target))
            writable = []
            for d in (target, target / "sub"):
                try:
                    (d / "x").touch()
                    writable.append(d)
                except OSError as e:
                    assert e.errno == errno.EROFS
            status = 3 if writable else 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "a submount stayed writable (or the child failed)"
