"""device-mapper, one line per operation (containerd's snapshots/devmapper/dmsetup/dmsetup.go habit):
each function is what the thin-pool driver asks of device-mapper, over one of two private doors.
What a caller must do around an operation is said where it is.

- `_dmsetup`: dmsetup(8), through sdctr.external.run, for what changes /dev -- create, remove,
  suspend, resume: dmsetup waits until udev has made or removed the /dev/mapper node (its cookie).
- `_ioctl`: one ioctl on /dev/mapper/control, for what does not -- a device's info, a pool's
  status and table, the messages that change a pool's metadata. No process: a dmsetup was ~70 ms
  under the VM tier's emulated CPU, and `sdctr run` on thin asked six of these questions.

Tables (the kernel's Documentation/admin-guide/device-mapper/thin-provisioning.rst):

    thin-pool:  0 <sectors> thin-pool <metadata dev> <data dev> <block sectors> <low water>
                1 skip_block_zeroing
    thin:       0 <sectors> thin <pool dev> <device id>
"""

from __future__ import annotations

import os
import struct

from sdctr.log import SdctrError

MAPPER = "/dev/mapper"
SECTOR = 512
MAX_DEVICE_ID = (1 << 24) - 1  # the pool's device ids are 24 bits


class DmError(SdctrError):
    """A dmsetup failure, with the kernel's reason when dmsetup said one ("File exists",
    "No data available", "Device or resource busy"), for callers that tell them apart."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason

    @property
    def busy(self) -> bool:
        return "busy" in self.reason.lower()


def path(name: str) -> str:
    return name if name.startswith(MAPPER + "/") else f"{MAPPER}/{name}"


def pool_table(metadata_dev: str, data_dev: str, data_bytes: int, block_sectors: int, low_water: int) -> str:
    return (f"0 {data_bytes // SECTOR} thin-pool {metadata_dev} {data_dev} {block_sectors} {low_water} "
            "1 skip_block_zeroing")


def thin_table(pool: str, device_id: int, size: int) -> str:
    return f"0 {size // SECTOR} thin {path(pool)} {device_id}"


# --- devices ------------------------------------------------------------------------------------

def create(name: str, table: str) -> None:
    _dmsetup("create", name, "--table", table)


def remove(name: str) -> None:
    """Fails with reason "busy" while anything holds the device open (a mount, a snapshot's
    suspend): the caller unmounts first, or uses remove_deferred."""
    _dmsetup("remove", name)


def remove_deferred(name: str) -> None:
    """The device goes when its last user closes it (the kernel's deferred remove)."""
    _dmsetup("remove", "--deferred", name)


def suspend(name: str) -> None:
    """Flushes and blocks I/O: an active origin must be suspended around create_snap."""
    _dmsetup("suspend", name)


def resume(name: str) -> None:
    _dmsetup("resume", name)


def exists(name: str) -> bool:
    try:
        _ioctl(DEV_STATUS, name)
    except DmError:
        return False
    return True


def status(name: str) -> list[str]:
    """The first target's status line, split: ["0", sectors, target, params...] (dmsetup status's;
    a pool commits its metadata first, as there)."""
    return _first_target(_ioctl(TABLE_STATUS, name))


def table(name: str) -> list[str]:
    """The first target's table line, split, as dmsetup table prints it."""
    return _first_target(_ioctl(TABLE_STATUS, name, flags=STATUS_TABLE_FLAG))


def names() -> list[str]:
    """Every device-mapper device on the machine."""
    text = _out("ls")
    if text.startswith("No devices found"):
        return []
    return [line.split()[0] for line in text.splitlines() if line]


def kernel_names(sys_block: str = "/sys/block") -> set[str]:
    """The devices the kernel has, from sysfs (no dmsetup process): also one whose /dev/mapper
    node udev has not made, as a `dmsetup create` killed halfway leaves it."""
    found = set()
    for d in os.listdir(sys_block) if os.path.isdir(sys_block) else ():
        if d.startswith("dm-"):
            try:
                with open(f"{sys_block}/{d}/dm/name") as f:
                    found.add(f.read().strip())
            except OSError:  # (removed meanwhile)
                pass
    return found


# --- messages to a pool (its metadata changes; each one the caller wraps in a transaction) --------

def create_thin(pool: str, device_id: int) -> None:
    _message(pool, f"create_thin {device_id}")


def create_snap(pool: str, device_id: int, origin_id: int) -> None:
    """The origin must not change while the pool copies its mapping: suspend it if it is active."""
    _message(pool, f"create_snap {device_id} {origin_id}")


def delete(pool: str, device_id: int) -> None:
    """The device must be inactive (removed), or the pool refuses with "busy"."""
    _message(pool, f"delete {device_id}")


def set_transaction_id(pool: str, old: int, new: int) -> None:
    """Fails unless the pool's id is ``old``: the commit point of a transaction."""
    _message(pool, f"set_transaction_id {old} {new}")


def pool_block_sectors(pool: str) -> int:
    """The pool's data block size, from its table: "0 SECTORS thin-pool META DATA BLOCK LOW ..."."""
    return int(table(pool)[5])


def transaction_id(pool: str) -> int:
    return int(status(pool)[3])


def pool_usage(pool: str) -> tuple[tuple[int, int], tuple[int, int], str]:
    """(used, total) metadata blocks, (used, total) data blocks, and the pool's mode: "rw", or
    "out_of_data_space", "ro", "Fail" (a pool in trouble: status then has fewer fields)."""
    fields = status(pool)
    if len(fields) < 8:
        return (0, 1), (0, 1), fields[3] if len(fields) > 3 else "Fail"
    meta, data = (tuple(int(n) for n in fields[i].split("/", 1)) for i in (4, 5))
    return (meta[0], meta[1]), (data[0], data[1]), fields[7]


def _message(pool: str, message: str) -> None:
    _ioctl(TARGET_MSG, pool, struct.pack("=Q", 0) + message.encode() + b"\0")


# --- the kernel's interface (include/uapi/linux/dm-ioctl.h, version 4) ---------------------------

_HEADER = struct.Struct("=3I I I I i I I I Q 128s 129s 7x")  # struct dm_ioctl: 312 bytes
_TARGET = struct.Struct("=Q Q i I 16s")  # struct dm_target_spec; its parameters follow it
DEV_STATUS, TABLE_STATUS, TARGET_MSG = 7, 12, 14  # the commands sdctr sends
STATUS_TABLE_FLAG, BUFFER_FULL_FLAG = 1 << 4, 1 << 8
# _IOWR(0xfd, command, struct dm_ioctl): the direction bits are 3 << 30 on x86, arm and s390,
# 6 << 29 where _IOC_SIZEBITS is 13 (powerpc, mips, sparc)
_READ_WRITE = 6 << 29 if os.uname().machine.startswith(("ppc", "mips", "sparc")) else 3 << 30


def _ioctl(command: int, name: str, data: bytes = b"", *, flags: int = 0, size: int = 16384) -> bytes:
    """The other door: one ioctl on /dev/mapper/control, for device ``name``; the buffer the kernel
    wrote back (header and data). DmError's reason is the errno's text ("File exists", "No data
    available", "Device or resource busy"), as dmsetup reports the same ioctl's failure."""
    import fcntl

    name = name[len(MAPPER) + 1:] if name.startswith(MAPPER + "/") else name
    buf = bytearray(max(size, _HEADER.size + len(data)))
    _HEADER.pack_into(buf, 0, 4, 0, 0, len(buf), _HEADER.size, 0, 0, flags, 0, 0, 0, name.encode(), b"")
    buf[_HEADER.size:_HEADER.size + len(data)] = data
    try:
        fd = os.open(f"{MAPPER}/control", os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, _READ_WRITE | _HEADER.size << 16 | 0xFD << 8 | command, buf, True)
        finally:
            os.close(fd)
    except OSError as e:
        what = {DEV_STATUS: "info", TABLE_STATUS: "status", TARGET_MSG: "message"}[command]
        detail = f" {data[8:-1].decode()!r}" if command == TARGET_MSG else ""
        reason = e.strerror or os.strerror(e.errno or 0)
        raise DmError(f"device-mapper {what}{detail} on {name} failed: {reason}", reason) from None
    if _HEADER.unpack_from(buf)[7] & BUFFER_FULL_FLAG:
        return _ioctl(command, name, data, flags=flags, size=size * 4)
    return bytes(buf)


def _first_target(buf: bytes) -> list[str]:
    """A TABLE_STATUS answer's first target as dmsetup prints it: start, length, type, params."""
    header = _HEADER.unpack_from(buf)
    start, count = header[4], header[5]
    if count == 0:
        return []
    sector, length, _, _, kind = _TARGET.unpack_from(buf, start)
    params = buf[start + _TARGET.size:].split(b"\0", 1)[0].decode()
    return [str(sector), str(length), kind.rstrip(b"\0").decode(), *params.split()]


def _out(*args: str) -> str:
    out = _dmsetup(*args)
    return out or ""


def _dmsetup(*args: str, check: bool = True) -> str | None:
    """The one door: dmsetup's output, or DmError carrying the kernel's reason (the text after
    "failed: " in "device-mapper: message ioctl on pool failed: File exists")."""
    from sdctr.external import run

    r = run(["dmsetup", *args], check=False)
    if r.returncode == 0:
        return r.stdout.strip()
    if not check:
        return None
    first = (r.stderr.strip().splitlines() or [""])[0]
    reason = first.rpartition("failed: ")[2] if "failed: " in first else first
    raise DmError(f"dmsetup {' '.join(args)} failed: {first or os.strerror(r.returncode)}", reason)
