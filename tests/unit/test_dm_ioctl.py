"""sdctr/storage/dmsetup.py's second door: the questions and pool messages sent to the kernel as
one ioctl on /dev/mapper/control (include/uapi/linux/dm-ioctl.h), checked here against the
header's layout with the kernel replaced; the VM tier's thin tests send them to a real pool."""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path

import pytest

from sdctr.storage import dmsetup

pytestmark = pytest.mark.unit

# _IOWR(0xfd, nr, struct dm_ioctl) on x86 and arm: strace prints DM_VERSION as 0xc138fd00
DM_TABLE_STATUS, DM_TARGET_MSG = 0xC138FD0C, 0xC138FD0E
GENERIC_IOC = not os.uname().machine.startswith(("ppc", "mips", "sparc"))


class Kernel:
    """fcntl.ioctl on the fake control node: records each request and its buffer, and answers
    with ``answer(buf)`` or raises ``error``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp: Path):
        (tmp / "control").touch()
        monkeypatch.setattr(dmsetup, "MAPPER", str(tmp))
        monkeypatch.setattr(fcntl, "ioctl", self.ioctl)
        self.calls: list[tuple[int, bytes]] = []
        self.answers: list[bytes] = []
        self.error = 0

    def ioctl(self, fd: int, request: int, buf: bytearray, mutate: bool) -> int:
        assert mutate and os.readlink(f"/proc/self/fd/{fd}").endswith("/control")
        self.calls.append((request, bytes(buf)))
        if self.error:
            raise OSError(self.error, os.strerror(self.error))
        if self.answers:
            answer = self.answers.pop(0)
            buf[:len(answer)] = answer
        return 0


def header(buf: bytes) -> dict[str, object]:
    fields = struct.unpack_from("=3I I I I i I I I Q 128s 129s", buf)
    return {"version": fields[:3], "data_size": fields[3], "data_start": fields[4], "flags": fields[7],
            "name": fields[11].rstrip(b"\0").decode()}


def test_a_pool_message_is_the_target_msg_ioctl_with_the_text_after_a_sector(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = Kernel(monkeypatch, tmp_path)
    dmsetup.create_snap(f"{tmp_path}/sdctr-1-pool", 9, 3)  # a /dev/mapper path, as callers pass
    [(request, buf)] = kernel.calls
    if GENERIC_IOC:
        assert request == DM_TARGET_MSG
    h = header(buf)
    assert h["version"] == (4, 0, 0) and h["name"] == "sdctr-1-pool" and h["data_start"] == 312
    assert h["data_size"] == len(buf) >= 312 + 8 + len("create_snap 9 3") + 1
    assert buf[312:312 + 8 + 16] == struct.pack("=Q", 0) + b"create_snap 9 3\0"


def target(params: bytes, *, full: bool = False) -> bytes:
    """The kernel's TABLE_STATUS answer: a header with one target, its spec and parameters."""
    flags = dmsetup.BUFFER_FULL_FLAG if full else 0
    h = struct.pack("=3I I I I i I I I Q 128s 129s 7x", 4, 45, 0, 16384, 312, 1, 0, flags, 0, 0, 0, b"p", b"")
    return h + struct.pack("=Q Q i I 16s", 0, 1048576, 0, 0, b"thin-pool") + params + b"\0"


def test_a_status_is_the_first_target_as_dmsetup_prints_it(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = Kernel(monkeypatch, tmp_path)
    kernel.answers = [target(b"3 10/1000 20/8192 - rw discard_passdown queue_if_no_space -")]
    assert dmsetup.transaction_id("sdctr-1-pool") == 3
    kernel.answers = [target(b"0:1 0:2 128 32768 1 skip_block_zeroing")]
    assert dmsetup.pool_block_sectors("sdctr-1-pool") == 128
    requests = [(r, header(b)["flags"]) for r, b in kernel.calls]
    if GENERIC_IOC:
        assert requests == [(DM_TABLE_STATUS, 0), (DM_TABLE_STATUS, dmsetup.STATUS_TABLE_FLAG)]


def test_an_answer_too_big_for_the_buffer_is_asked_again_with_a_bigger_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = Kernel(monkeypatch, tmp_path)
    kernel.answers = [target(b"", full=True), target(b"4 1/2 3/4 - rw")]
    assert dmsetup.transaction_id("sdctr-1-pool") == 4
    assert [len(b) for _, b in kernel.calls] == [16384, 65536]


@pytest.mark.parametrize(("code", "reason"), [(errno.EEXIST, "file exists"), (errno.ENODATA, "no data"),
                                              (errno.EBUSY, "busy")])
def test_a_refused_message_carries_the_kernels_reason_as_callers_test_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, reason: str) -> None:
    kernel = Kernel(monkeypatch, tmp_path)
    kernel.error = code
    with pytest.raises(dmsetup.DmError) as e:
        dmsetup.delete("sdctr-1-pool", 7)
    assert reason in e.value.reason.lower()
    assert "'delete 7'" in str(e.value) and "sdctr-1-pool" in str(e.value)
    assert e.value.busy == (code == errno.EBUSY)


def test_a_missing_device_does_not_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = Kernel(monkeypatch, tmp_path)
    assert dmsetup.exists("sdctr-1-pool")
    kernel.error = errno.ENXIO
    assert not dmsetup.exists("sdctr-1-pool")
