"""LVM thin pools for the devicemapper driver: Docker's `dm.thinpooldev`, made as
docker-storage-setup made it (`sdctr storage setup --lvm VG`). Each lvm(8) command is a one-line
function over one helper (_lvm), as sdctr.storage.dmsetup's are.

The pool must be sdctr's alone, and LVM lets it be by transaction id (lvm2 2.02.116, "external
users of thin pools"). A pool whose LVM metadata says transaction id 0 and holds no thin volume
is "new" to LVM: activated without its -tpool layer (the device-mapper device VG-LV is the
thin-pool target itself) and never checked against the kernel's transaction id. sdctr's first
transaction moves the kernel's id past 0; from then on lvcreate refuses thin volumes there
("Cannot use thin pool VG/LV with transaction id 1 for thin volumes. Expected transaction id 0"),
so LVM's devices and sdctr's never share device ids or transactions. A pool LVM has used (its id
past 0, thin volumes in it) is refused here for the same reason.
"""

from __future__ import annotations

import re

from sdctr.log import SdctrError
from sdctr.record import Record

CHUNK_SIZE = "512K"  # docker-storage-setup's CHUNK_SIZE: fewer, larger blocks than the loop pool's
MIN_METADATA = 2 << 20  # lvm's smallest pool metadata
SECTOR = 512
# docker-storage-setup's AUTO_EXTEND_POOL: dmeventd grows the pool by 20 % when 60 % is used, where
# it monitors the pool (lvm2-monitor.service); harmless where it does not
PROFILE = "sdctr-thinpool"
PROFILE_DIR = "/etc/lvm/profile"
PROFILE_TEXT = ("# written by `sdctr storage setup --lvm`: the thin pool grows as it fills\n"
                "activation {\n\tthin_pool_autoextend_threshold=60\n\tthin_pool_autoextend_percent=20\n}\n")
_PERCENT = re.compile(r"([0-9]{1,3})%(FREE|VG|PVS)", re.IGNORECASE)
TOOLS = ("lvs", "vgs", "lvcreate", "lvchange")


class Pool(Record):
    """An LVM thin pool, as storage.devicemapper.thinpool names it: VG/LV."""

    vg: str
    lv: str

    @classmethod
    def named(cls, text: str) -> Pool:
        vg, _, lv = text.partition("/")
        return cls(vg, lv)

    @property
    def text(self) -> str:
        return f"{self.vg}/{self.lv}"

    @property
    def dm_name(self) -> str:
        """The device-mapper name LVM gives an unused pool: each '-' doubled, then VG-LV."""
        return f"{self.vg.replace('-', '--')}-{self.lv.replace('-', '--')}"


class PoolLV(Record):
    """What lvs says of a pool's LV."""

    uuid: str
    segtype: str  # "thin-pool" for a thin pool
    transaction_id: int  # LVM's own: 0 while LVM has made no thin volume in it
    thin_count: int  # LVM's thin volumes in it
    active: bool
    size: int  # bytes of data
    metadata_size: int
    chunk_size: int


class VGSpace(Record):
    size: int
    free: int
    extent: int


# --- what lvm says ------------------------------------------------------------------------------

def pool_lv(pool: Pool) -> PoolLV | None:
    """None where there is no such LV (or no such VG: vgs says which)."""
    out = _lvm("lvs", "--noheadings", "--nosuffix", "--units", "b", "--separator", "|", "-o",
               "lv_uuid,segtype,transaction_id,thin_count,lv_active,lv_size,lv_metadata_size,chunk_size",
               pool.text, check=False)
    if out is None or not out.strip():
        return None
    return parse_lvs(out)


def parse_lvs(out: str) -> PoolLV:
    uuid, segtype, tid, count, active, size, meta, chunk = out.strip().splitlines()[0].strip().split("|")
    return PoolLV(uuid, segtype, int(tid or 0), int(count or 0), active.strip() == "active",
                  int(size or 0), int(meta or 0), int(chunk or 0))


def vg_space(vg: str) -> VGSpace:
    out = _lvm("vgs", "--noheadings", "--nosuffix", "--units", "b", "-o", "vg_size,vg_free,vg_extent_size",
               vg, check=False)
    if out is None or not out.strip():
        raise SdctrError(f"volume group {vg} does not exist",
                         hint=f"`vgs` lists them; make one: pvcreate DEVICE; vgcreate {vg} DEVICE")
    size, free, extent = (int(n) for n in out.split())
    return VGSpace(size, free, extent)


def check_tools() -> None:
    import shutil

    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    missing = [t for t in TOOLS if shutil.which(t, path=path) is None]
    if missing:
        raise SdctrError(f"LVM's tools are not installed ({missing[0]} not found)",
                         hint="install lvm2 (dnf install lvm2; apt install lvm2)")


def check_dedicated(pool: Pool, lv: PoolLV | None) -> PoolLV:
    """The pool exists, is a thin pool, and LVM has not used it: sdctr's alone."""
    if lv is None:
        raise SdctrError(f"LVM thin pool {pool.text} (storage.devicemapper.thinpool) does not exist",
                         hint=f"`lvs {pool.vg}` lists the volume group's LVs; `sdctr storage setup --lvm "
                              f"{pool.vg}` makes a pool")
    if lv.segtype != "thin-pool":
        raise SdctrError(f"LVM volume {pool.text} is not a thin pool (it is {lv.segtype})",
                         hint=f"`sdctr storage setup --lvm {pool.vg}` makes one")
    if lv.thin_count or lv.transaction_id:
        raise SdctrError(f"LVM thin pool {pool.text} is LVM's own: it holds {lv.thin_count} thin volume(s) "
                         f"of LVM's (its transaction id is {lv.transaction_id}); sdctr needs a pool no "
                         "one else makes devices in",
                         hint=f"make one for sdctr: sdctr storage setup --lvm {pool.vg} --name OTHER")
    return lv


# --- what lvm does ------------------------------------------------------------------------------

def activate(pool: Pool) -> None:
    _lvm("lvchange", "-ay", pool.text)


def metadata_bytes(vg_size: int) -> int:
    """docker-storage-setup's choice: 0.1 % of the volume group, at least lvm's 2 MiB."""
    return max(vg_size // 1000 // SECTOR * SECTOR + SECTOR, MIN_METADATA)


def data_size_args(vg: str, size: str, space: VGSpace, metadata: int) -> list[str]:
    """lvcreate's size arguments for ``size`` (N%FREE, N%VG, N%PVS or a size: 10G), refused
    where the volume group cannot hold it with its metadata and lvm's spare copy of that."""
    from sdctr.config import _size as parse_size

    m = _PERCENT.fullmatch(size.strip())
    need = 2 * metadata
    if m:
        percent = int(m.group(1))
        if not 0 < percent <= 100:
            raise SdctrError(f"--size {size}: not a percentage of 1 to 100")
        args = ["-l", f"{percent}%{m.group(2).upper()}"]
        base = space.free if m.group(2).upper() == "FREE" else space.size
        data = base * percent // 100
    else:
        data = parse_size(size, "sdctr storage setup", "--size")
        args = ["-L", f"{data // SECTOR}s"]
        need += data
    if data < 64 * space.extent or space.free < need:
        raise SdctrError(f"volume group {vg} has {gib(space.free)} free: a thin pool of "
                         f"{gib(max(data, 64 * space.extent))} with {metadata >> 20} MiB of metadata "
                         "(and lvm's spare copy of it) does not fit",
                         hint=f"a smaller --size, or more room: vgextend {vg} DEVICE")
    return args


def gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def create_command(pool: Pool, size_args: list[str], metadata: int) -> list[str]:
    """docker-storage-setup's lvcreate: no zeroing of new blocks (skip_block_zeroing, as the
    loop pool), 512 KiB chunks, 0.1 % of the VG for metadata, the autoextend profile."""
    return ["lvcreate", "-y", "--type", "thin-pool", "--zero", "n", "--chunksize", CHUNK_SIZE,
            "--poolmetadatasize", f"{metadata // SECTOR}s", *size_args,
            "--metadataprofile", PROFILE, "-n", pool.lv, pool.vg]


def write_profile() -> str:
    import os
    from pathlib import Path

    path = Path(PROFILE_DIR) / f"{PROFILE}.profile"
    if not path.exists():
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(PROFILE_TEXT)
        os.rename(tmp, path)
    return str(path)


def create(pool: Pool, size_args: list[str], metadata: int) -> None:
    _lvm(*create_command(pool, size_args, metadata))


def _lvm(*cmd: str, check: bool = True) -> str | None:
    """The one door: an lvm command's output; on failure SdctrError with lvm's own last line,
    or None where not ``check``."""
    import shlex

    from sdctr.external import run

    r = run(list(cmd), check=False)
    if r.returncode == 0:
        return r.stdout
    if not check:
        return None
    lines = [line.strip() for line in (r.stderr or "").splitlines() if line.strip()]
    raise SdctrError(f"{shlex.join(cmd)} failed: {lines[-1] if lines else f'exit status {r.returncode}'}")
