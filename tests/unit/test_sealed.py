"""sdctr.init.sealed: the sealed memfd copy that the container's PID 1 and exec's helper run
from (CVE-2019-5736's class). The testhost tier attacks it from inside a container
(tests/testhost/test_pid1_exe.py); here, the copy itself."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path

import pytest

from sdctr.init.sealed import SEALS, sealed_copy

pytestmark = pytest.mark.unit


def test_the_copy_is_sealed_for_good_and_runs(tmp_path: Path) -> None:
    true = shutil.which("true")
    assert true is not None
    original = tmp_path / "true"
    shutil.copy(true, original)
    fd = sealed_copy(str(original), "probe")
    try:
        assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) == SEALS
        assert os.get_inheritable(fd) is False  # nothing the copy runs inherits it
        assert os.readlink(f"/proc/self/fd/{fd}") == "/memfd:probe (deleted)"
        assert os.pread(fd, os.path.getsize(original), 0) == original.read_bytes()
        for attempt in (lambda: os.write(fd, b"X"), lambda: os.ftruncate(fd, 0),
                        lambda: fcntl.fcntl(fd, fcntl.F_ADD_SEALS, 0)):
            with pytest.raises(PermissionError) as e:
                attempt()
            assert e.value.errno == errno.EPERM
        pid = os.fork()
        if pid == 0:
            try:
                os.execve(fd, ["true"], {})
            finally:
                os._exit(99)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    finally:
        os.close(fd)
    assert original.read_bytes() == Path(true).read_bytes()
