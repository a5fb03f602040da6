"""dmsetup(8), one line per operation (containerd's snapshots/devmapper/dmsetup/dmsetup.go habit):
each function is what the thin-pool driver asks of device-mapper, over one private helper that
goes through sdctr.external.run. What a caller must do around an operation is said where it is.

Tables (the kernel's Documentation/admin-guide/device-mapper/thin-provisioning.rst):

    thin-pool:  0 <sectors> thin-pool <metadata dev> <data dev> <block sectors> <low water>
                1 skip_block_zeroing
    thin:       0 <sectors> thin <pool dev> <device id>
"""

from __future__ import annotations

import os

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
    return _dmsetup("info", name, check=False) is not None


def status(name: str) -> list[str]:
    """The first target's status line, split: ["0", sectors, target, params...]."""
    return _out("status", name).split()


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


def open_count(name: str) -> int:
    return int(_out("info", "--noheadings", "--columns", "-o", "open", name))


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


def reserve_metadata_snap(pool: str) -> None:
    """A consistent copy of the live metadata for thin_check/thin_dump of an active pool."""
    _message(pool, "reserve_metadata_snap")


def release_metadata_snap(pool: str) -> None:
    _message(pool, "release_metadata_snap")


def pool_block_sectors(pool: str) -> int:
    """The pool's data block size, from its table: "0 SECTORS thin-pool META DATA BLOCK LOW ..."."""
    return int(_out("table", pool).split()[5])


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
    _dmsetup("message", path(pool), "0", message)


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
