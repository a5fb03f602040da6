"""exec's handle on the container's PID 1 and the system calls under it, on processes of the
test's own: a process is named by a pidfd checked against the unit's cgroup, and once it is gone
it stays gone, whatever now has its PID."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdctr import linux
from sdctr.init import enter
from sdctr.log import SdctrError


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen(["sleep", "60"])
    yield p
    p.kill()
    p.wait()


def cgroup_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text().splitlines()[0].split(":", 2)[2]


def test_a_process_outside_the_units_cgroup_is_refused(sleeper: subprocess.Popen[bytes]) -> None:
    with pytest.raises(SdctrError, match=r"is not in the container.s cgroup /sdctr\.slice/ctr-x"):
        enter.Leader.find(sleeper.pid, "/sdctr.slice/ctr-x.service")


def test_an_exited_leader_stays_exited(sleeper: subprocess.Popen[bytes]) -> None:
    leader = enter.Leader.find(sleeper.pid, cgroup_of(sleeper.pid))
    assert leader.pidfd is not None  # Linux 5.3 and newer, as everywhere we test
    root, spaces = leader.open_root_and_namespaces()
    for fd in (root, *spaces):
        os.close(fd)
    sleeper.kill()
    sleeper.wait()  # reaped: its PID is free for anyone
    with pytest.raises(SdctrError, match="has exited"):
        leader.check()
    with pytest.raises(SdctrError, match="has exited"):
        leader.open_root_and_namespaces()


def test_without_pidfd_the_start_time_names_the_process(sleeper: subprocess.Popen[bytes]) -> None:
    real = enter._starttime(sleeper.pid)
    enter.Leader(sleeper.pid, None, real).check()
    with pytest.raises(SdctrError, match="has exited"):  # another process now has that PID
        enter.Leader(sleeper.pid, None, real + 1).check()


def test_a_gone_pid_is_refused_at_once() -> None:
    p = subprocess.Popen(["true"])
    p.wait()
    with pytest.raises(SdctrError, match="has exited"):
        enter.Leader.find(p.pid, "/")


class _NoCloseRange:
    @staticmethod
    def syscall(*_: object) -> int:
        ctypes.set_errno(errno.ENOSYS)
        return -1


@pytest.mark.parametrize("kernel", ["close_range", "before 5.9"])
def test_close_range(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if kernel != "close_range":
        monkeypatch.setattr(linux, "_libc", _NoCloseRange())
    first = os.open(os.devnull, os.O_RDONLY)
    second = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(second, True)
    try:
        linux.close_range(second, second, linux.CLOSE_RANGE_CLOEXEC)
        assert not os.get_inheritable(second)
        linux.close_range(first, second)
        for fd in (first, second):
            with pytest.raises(OSError):
                os.fstat(fd)
    finally:
        for fd in (first, second):
            try:
                os.close(fd)
            except OSError:
                pass


def test_open_pty_gives_a_pair_that_is_not_our_terminal() -> None:
    master, slave = linux.open_pty("/dev/ptmx")
    try:
        assert os.isatty(slave) and not os.get_inheritable(master) and not os.get_inheritable(slave)
        os.write(slave, b"ping\n")
        assert os.read(master, 100) == b"ping\r\n"
        with open("/proc/self/stat") as f:
            tty_nr = int(f.read().rsplit(")", 1)[1].split()[4])
        assert tty_nr != os.fstat(slave).st_rdev
    finally:
        os.close(slave)
        os.close(master)
