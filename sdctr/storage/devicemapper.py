"""The thin-pool driver: a device-mapper thin pool over two sparse loop files, each image layer a
thin snapshot of its parent with the layer applied, a container a snapshot of its image's top
layer (the Snapshotter interface is in sdctr.storage.snapshotter; dmsetup is sdctr.storage.dmsetup).

    <root>/devicemapper/pool/data, metadata   the pool's loop files (sparse; sizes in sdctr.yaml)
    <root>/devicemapper/metadata/<dev>.json   one per thin device: device_id, transaction_id, size,
                                              initialized, deleted (and its origin and layers)
    <root>/devicemapper/transaction.json      the pool's committed transaction id, the next device
                                              id and the open transaction, if any
    <root>/devicemapper/lock                  every change to the pool is made under it
    <root>/devicemapper/pool.json             which pool the metadata describes (the loop files,
                                              or an LVM thin pool and its LV uuid)

Or an existing LVM thin pool (storage.devicemapper.thinpool: VG/LV, sdctr.storage.lvm), which sdctr
activates when it is not active and never removes; it must be sdctr's alone (lvm.check_dedicated).

Devices: "base" (an empty file system), "layer-<chain id>" (a snapshot of the layer below, or of
the base, with the layer applied), "ctr-<id>" (a snapshot of its image's top layer). Thin
snapshots share blocks but not lifetimes: any device can be deleted without touching another.

Crash safety (Docker's devmapper deviceset, made explicit): every change to the pool's metadata is
one transaction. The open-transaction record (the new transaction id, the device id, what is
done) is written first; then the pool message; then the device's JSON; then the commit,
`set_transaction_id old new`, which the pool applies atomically; then the record closes. When the
pool comes up, a record whose open transaction the pool committed is closed (rolled forward); one
the pool did not commit is undone: the device it names is deleted from the pool (it may or may
not have got there) and its JSON removed. A create interrupted is thus undone, a delete finished.
A device whose JSON says deleted (a removal interrupted or deferred) is deleted again; a layer
never marked initialized (its unpack interrupted) is deleted, to be unpacked again.

Activation is a shell command: `dmsetup create` with the thin table and `mount`; deactivation an
unmount and `dmsetup remove`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
from pathlib import Path

from sdctr.log import SdctrError, debug
from sdctr.paths import Paths
from sdctr.record import Record
from sdctr.storage import dmsetup
from sdctr.storage.mountinfo import mounts
from sdctr.storage.snapshotter import Mount, unmount

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Iterator
    from typing import IO, Any

    from sdctr.config import DeviceMapper as Settings
    from sdctr.storage.snapshotter import LayeredImage

BLOCK_SECTORS = 128  # 64 KiB data blocks, Docker's dm.thinpblocksize
LOW_WATER = 32768  # blocks; Docker's and containerd's low-water mark
METADATA_BLOCK = 4096  # the thin pool's metadata block, as its status counts them
_CID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
KILL_AT = "SDCTR_TEST_KILL_AT"  # fault injection: SIGKILL ourselves at the named step


class Device(Record):
    """One thin device, as its JSON file holds it."""

    name: str  # "base", "layer-<chain hex>", "ctr-<cid>"
    device_id: int
    transaction_id: int  # the transaction that created it
    size: int  # bytes
    initialized: bool = False  # its file system and layer are complete
    deleted: bool = False  # its deletion started (or was deferred): finish it
    origin: str = ""  # the device it is a snapshot of
    layers: tuple[str, ...] = ()  # a layer device's chain of diff ids, bottom first
    filesystem: str = ""  # the base device's (its snapshots inherit it)


def chain_id(layers: tuple[str, ...]) -> str:
    """The OCI chain id of a layer stack: what a snapshot of it depends on."""
    chain = layers[0]
    for diff in layers[1:]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {diff}".encode()).hexdigest()
    return chain


def layer_name(layers: tuple[str, ...]) -> str:
    return "layer-" + chain_id(layers).partition(":")[2] if layers else "base"


def container_name(cid: str) -> str:
    if not _CID.fullmatch(cid):
        raise SdctrError(f"{cid!r} is not a container id")
    # device-mapper names stop at 127 bytes: a long id is hashed
    return f"ctr-{cid}" if len(cid) <= 64 else "ctr-" + hashlib.sha256(cid.encode()).hexdigest()[:48]


def _step(name: str) -> None:
    if os.environ.get(KILL_AT) == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


class DeviceMapperSnapshotter:
    name = "devicemapper"

    def __init__(self, paths: Paths, settings: Settings | None = None):
        if settings is None:
            from sdctr.config import load

            settings = load().storage.devicemapper
        self.paths, self.settings = paths, settings
        self.base = Path(os.path.realpath(paths.root)) / "devicemapper"
        self.pool_dir, self.meta_dir = self.base / "pool", self.base / "metadata"
        self.record_path = self.base / "transaction.json"
        self._lock_depth = 0
        self._lock_file: IO[str] | None = None
        self._up = False

    # --- names ----------------------------------------------------------------------------------

    @property
    def prefix(self) -> str:
        """Docker's habit: named after the device and inode of our directory, so two roots on one
        machine (tests) have two pools and a moved root keeps its own."""
        self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(self.base)
        return f"sdctr-{os.major(st.st_dev)}:{os.minor(st.st_dev)}-{st.st_ino}"

    @property
    def pool(self) -> str:
        if self.settings.thinpool:
            from sdctr.storage.lvm import Pool

            return Pool.named(self.settings.thinpool).dm_name
        return f"{self.prefix}-pool"

    def dm_name(self, dev: str) -> str:
        return f"{self.prefix}-{dev}"

    def dm_path(self, dev: str) -> str:
        return dmsetup.path(self.dm_name(dev))

    # --- metadata -------------------------------------------------------------------------------

    def _json(self, name: str) -> Path:
        return self.meta_dir / f"{name}.json"

    def load(self, name: str) -> Device | None:
        from sdctr.state import read_json

        try:
            d = read_json(self._json(name))
        except FileNotFoundError:
            return None
        return Device(**{**d, "layers": tuple(d.get("layers", ()))})

    def devices(self) -> list[Device]:
        if not self.meta_dir.is_dir():
            return []
        found = (self.load(p.name[:-len(".json")]) for p in sorted(self.meta_dir.glob("*.json")))
        return [d for d in found if d is not None]

    def _save(self, dev: Device) -> None:
        from sdctr.state import write_json_atomic

        write_json_atomic(self._json(dev.name), dev.as_dict())

    def _record(self) -> dict[str, Any]:
        from sdctr.state import read_json

        try:
            return dict(read_json(self.record_path))
        except FileNotFoundError:
            return {"transaction_id": 0, "next_device_id": 1, "open": None}

    def _write_record(self, rec: dict[str, Any]) -> None:
        from sdctr.state import write_json_atomic

        write_json_atomic(self.record_path, rec)

    # --- the lock, the pool and recovery ----------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        if self._lock_depth == 0:
            self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
            f = self._lock_file = open(self.base / "lock", "a")
            fcntl.flock(f, fcntl.LOCK_EX)
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0 and self._lock_file is not None:
                self._lock_file.close()  # releases the flock
                self._lock_file = None

    def up(self) -> None:
        """The pool active, its metadata agreeing with ours, and the base device made: what every
        change needs first (and the activation command, after a reboot)."""
        with self._locked():
            if self._up:
                return
            for d in (self.pool_dir, self.meta_dir):
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
            uuid = self._lvm_up() if self.settings.thinpool else ""
            if not dmsetup.exists(self.pool):
                self._start_pool()
            self._claim(uuid)
            self._recover()
            self._finish_deletions()
            base = self.load("base")
            if base is None or not base.initialized:
                self._make_base(base)
            self._up = True

    def _lvm_up(self) -> str:
        """The LVM pool checked to be sdctr's alone and activated where it is not: its LV uuid."""
        from sdctr.storage import lvm

        pool = lvm.Pool.named(self.settings.thinpool)
        lv = lvm.check_dedicated(pool, lvm.pool_lv(pool))
        if not lv.active:
            debug(f"LVM thin pool {pool.text} is not active: activating it")
            lvm.activate(pool)
        if not dmsetup.exists(self.pool):
            raise SdctrError(f"LVM thin pool {pool.text} is active but {dmsetup.path(self.pool)} is missing",
                             hint=f"see what LVM made of it: dmsetup ls; lvs -a {pool.vg}")
        return lv.uuid

    def _claim(self, uuid: str) -> None:
        """pool.json names the pool this metadata describes. Another pool (the setting changed)
        is refused while the metadata names devices beyond the base; otherwise it is taken over:
        the base device is made again in it, the transaction record starts at its id."""
        from sdctr.state import read_json, write_json_atomic

        want = {"origin": f"lvm:{self.settings.thinpool}" if self.settings.thinpool else "loop", "uuid": uuid}
        try:
            had = read_json(self.base / "pool.json")
        except FileNotFoundError:  # a loop pool made before pool.json was
            had = {"origin": "loop", "uuid": ""} if (self.pool_dir / "data").exists() else None
        if had == want:
            return
        if had is not None:
            held = [d.name for d in self.devices() if d.name != "base"]
            if held:
                raise SdctrError(
                    f"the thin devices in {self.meta_dir} are in another pool ({had['origin']}), not in "
                    f"{want['origin']} (storage.devicemapper.thinpool): {len(held)} of them",
                    hint="set storage.devicemapper.thinpool back, or remove the containers and images on "
                         "devicemapper (sdctr rm, sdctr rmi) under the old setting first")
            base = self.load("base")
            if base is not None:  # left in the old pool: the new one gets its own
                self._json("base").unlink()
        tid = dmsetup.transaction_id(self.pool)
        self._write_record({**self._record(), "transaction_id": tid, "open": None})
        write_json_atomic(self.base / "pool.json", want)

    def _start_pool(self) -> None:
        if self.settings.thinpool:  # _lvm_up activated it: never loop files for an LVM pool
            raise SdctrError(f"LVM thin pool {self.settings.thinpool} is not active")
        data, meta = self.pool_dir / "data", self.pool_dir / "metadata"
        for f, size in ((data, self.settings.data_size), (meta, self.settings.metadata_size)):
            if not f.exists():
                fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    os.ftruncate(fd, size)  # sparse: the pool takes what it writes
                finally:
                    os.close(fd)
        attached: list[str] = []
        try:
            loops = []
            for f in (data, meta):
                loop = _loop_of(f)
                if loop is None:
                    loop = _attach(f)
                    attached.append(loop)
                loops.append(loop)
            dmsetup.create(self.pool, dmsetup.pool_table(loops[1], loops[0], os.path.getsize(data),
                                                         BLOCK_SECTORS, LOW_WATER))
        except BaseException:
            for loop in attached:
                _detach(loop)
            raise

    def _recover(self) -> None:
        """Rolls the open transaction forward (the pool committed it) or back (it did not)."""
        rec = self._record()
        pool_tid = dmsetup.transaction_id(self.pool)
        opened = rec.get("open")
        if opened:
            if pool_tid == opened["transaction_id"]:
                debug(f"pool {self.pool}: transaction {pool_tid} was committed; closing it")
            else:
                debug(f"pool {self.pool}: transaction {opened['transaction_id']} was not committed "
                      f"(the pool is at {pool_tid}); undoing {opened['op']} of {opened['name']}")
                self._undo(opened)
        elif pool_tid != rec["transaction_id"]:
            debug(f"pool {self.pool} is at transaction {pool_tid}, our record at {rec['transaction_id']}")
        if opened or pool_tid != rec["transaction_id"]:
            rec.update(transaction_id=pool_tid, open=None)
            self._write_record(rec)

    def _undo(self, opened: dict[str, Any]) -> None:
        with contextlib.suppress(dmsetup.DmError):
            dmsetup.remove(self.dm_name(opened["name"]))
        try:
            dmsetup.delete(self.pool, opened["device_id"])
        except dmsetup.DmError as e:
            if "no data" not in e.reason.lower():  # ENODATA: the message never reached the pool
                raise
        dev = self.load(opened["name"])
        if dev is not None and dev.device_id == opened["device_id"]:
            self._json(dev.name).unlink()

    def _finish_deletions(self) -> None:
        for dev in self.devices():
            if dev.deleted or (not dev.initialized and dev.name != "base"):
                debug(f"device {dev.name}: finishing its deletion")
                self._delete(dev)

    @contextlib.contextmanager
    def _transaction(self, op: str, dev: str, device_id: int) -> Iterator[int]:
        """One change to the pool, committed with set_transaction_id; undone if the body fails."""
        rec = self._record()
        old, new = rec["transaction_id"], rec["transaction_id"] + 1
        opened = {"transaction_id": new, "device_id": device_id, "name": dev, "op": op}
        self._write_record({**rec, "open": opened})
        _step(f"{op}:opened")
        try:
            yield new
            _step(f"{op}:before-commit")
            dmsetup.set_transaction_id(self.pool, old, new)
        except BaseException as e:
            # "File exists": the id is taken in the pool, by nothing of ours to undo
            if not (isinstance(e, dmsetup.DmError) and "file exists" in e.reason.lower()):
                self._undo(opened)
            self._write_record({**self._record(), "open": None})
            raise
        _step(f"{op}:committed")
        self._write_record({**self._record(), "transaction_id": new, "open": None})

    def _allocate(self) -> int:
        """The next free device id (24 bits, wrapping), recorded as taken before it is used."""
        rec = self._record()
        used = {d.device_id for d in self.devices()}
        n = int(rec.get("next_device_id", 1))
        for _ in range(dmsetup.MAX_DEVICE_ID):
            if n not in used:
                break
            n = n % dmsetup.MAX_DEVICE_ID + 1
        else:
            raise SdctrError(f"pool {self.pool} has no free device id")
        self._write_record({**rec, "next_device_id": n % dmsetup.MAX_DEVICE_ID + 1})
        return n

    def _new_device(self, name: str, origin: Device | None, **fields: Any) -> Device:
        """A thin device (or a snapshot of ``origin``) in one transaction; a device id the pool
        already holds (someone else's) is skipped."""
        if self._json(name).exists():
            raise SdctrError(f"device {self.dm_name(name)} is still being deleted (it was busy)",
                             hint=f"try again once nothing holds it: dmsetup info {self.dm_name(name)}")
        if origin is not None:  # the base device, the first one, is made in an empty pool
            self._check_space()
        for _ in range(64):
            device_id = self._allocate()
            try:
                with self._transaction("create", name, device_id) as tid:
                    if origin is None:
                        dmsetup.create_thin(self.pool, device_id)
                    else:
                        self._snapshot(device_id, origin)
                    _step("create:messaged")
                    inherited: dict[str, Any] = {"size": self.settings.base_size}
                    if origin:
                        inherited = {"size": origin.size, "origin": origin.name,
                                     "filesystem": origin.filesystem}
                    dev = Device(name, device_id, tid, **{**inherited, **fields})
                    self._save(dev)
                    _step("create:saved")
                return dev
            except dmsetup.DmError as e:
                if "file exists" not in e.reason.lower():
                    raise
                debug(f"pool {self.pool} already has device id {device_id}; taking another")
        raise SdctrError(f"pool {self.pool}: no free device id after 64 tries")

    def _check_space(self) -> None:
        """Refuses a new device below the free-space floor (data and metadata): a pool that fills
        up holds every container's writes, then fails them, so the next container is refused
        while there is still room for the running ones."""
        meta, data, mode = dmsetup.pool_usage(self.pool)
        floor = self.settings.min_free
        grow = (f"remove containers or images (sdctr rm, sdctr image prune), or grow the pool: "
                f"truncate -s +10G {self.pool_dir / 'data'}, losetup -c on its loop device, then "
                f"dmsetup reload {self.pool} with the new size")
        if self.settings.thinpool:
            grow = (f"remove containers or images (sdctr rm, sdctr image prune), or grow the pool: "
                    f"lvextend -L +10G {self.settings.thinpool} (metadata: lvextend --poolmetadatasize "
                    f"+1G {self.settings.thinpool})")
        if mode != "rw":
            raise SdctrError(f"thin pool {self.pool} is in {mode} mode: no new snapshot", hint=grow)
        for what, (used, total) in (("data", data), ("metadata", meta)):
            if (total - used) * 100 < floor * total:
                raise SdctrError(f"thin pool {self.pool} is full: {what} {used * 100 // total}% used, "
                                 f"a new snapshot needs {floor}% free (storage.devicemapper.min_free)",
                                 hint=grow)

    def _snapshot(self, device_id: int, origin: Device) -> None:
        active = dmsetup.exists(self.dm_name(origin.name))
        if active:  # the origin must not change while the pool copies its mapping
            dmsetup.suspend(self.dm_name(origin.name))
        try:
            dmsetup.create_snap(self.pool, device_id, origin.device_id)
        finally:
            if active:
                dmsetup.resume(self.dm_name(origin.name))

    def _delete(self, dev: Device) -> None:
        """Marks it deleted, deactivates it and deletes it from the pool in one transaction. A
        device still open is removed by the kernel once closed (deferred) and deleted next time."""
        if not dev.deleted:
            dev = dev.replace(deleted=True)
            self._save(dev)
        _step("delete:marked")
        if not self._deactivate(dev.name, defer=True):
            debug(f"device {dev.name} is busy: its deletion is deferred")
            return
        with self._transaction("delete", dev.name, dev.device_id):
            try:
                dmsetup.delete(self.pool, dev.device_id)
            except dmsetup.DmError as e:
                if "no data" not in e.reason.lower():
                    raise
            _step("delete:messaged")
            self._json(dev.name).unlink()

    def _make_base(self, old: Device | None) -> None:
        from sdctr.external import run

        if old is not None:  # a base device whose mkfs was interrupted
            self._delete(old)
        fs = self.settings.filesystem or ("xfs" if _which("mkfs.xfs") else "ext4")
        dev = self._new_device("base", None, filesystem=fs)
        self._activate(dev)
        try:
            if fs == "xfs":  # -K: the pool's blocks are unwritten already, discarding costs time
                run(["mkfs.xfs", "-q", "-K", self.dm_path("base")])
            else:  # lazy init would write the inode tables later, into every snapshot
                run(["mkfs.ext4", "-q", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0",
                     self.dm_path("base")])
                self._with_mounted(dev, lambda root: (root / "lost+found").rmdir())
        finally:
            self._deactivate("base")
        self._save(dev.replace(initialized=True))

    # --- activation -----------------------------------------------------------------------------

    def _table(self, dev: Device) -> str:
        return dmsetup.thin_table(self.pool, dev.device_id, dev.size)

    def _activate(self, dev: Device) -> None:
        if not dmsetup.exists(self.dm_name(dev.name)):
            dmsetup.create(self.dm_name(dev.name), self._table(dev))

    def _deactivate(self, dev: str, *, defer: bool = False) -> bool:
        """Removes the device; a brief busy (udev's probe) is retried. False where it stays open:
        removed by the kernel at its last close when ``defer``."""
        import time

        name = self.dm_name(dev)
        for attempt in range(20):
            if not dmsetup.exists(name):
                return True
            try:
                dmsetup.remove(name)
                return True
            except dmsetup.DmError as e:
                if not e.busy:
                    raise
                time.sleep(0.05 * (attempt + 1))
        if defer:
            dmsetup.remove_deferred(name)
            return False
        raise SdctrError(f"device {name} stays busy", hint=f"see who holds it: dmsetup info {name}")

    def _mount_of(self, dev: Device, target: Path, *extra: str) -> Mount:
        options = (*extra, "nouuid") if dev.filesystem == "xfs" else extra  # snapshots share the uuid
        return Mount(dev.filesystem, self.dm_path(dev.name), target, options)

    def _with_mounted(self, dev: Device, body: Any) -> Any:
        from sdctr.storage.snapshotter import mount

        target = self.base / "mnt" / dev.name
        m = self._mount_of(dev, target)
        mount(m)
        try:
            return body(target)
        finally:
            unmount(target)
            with contextlib.suppress(OSError):
                target.rmdir()

    def _mounted_at(self, dev: str) -> list[Path]:
        source = self.dm_path(dev)
        return [m.target for m in mounts() if m.source == source]

    def _container(self, cid: str) -> Device:
        dev = self.load(container_name(cid))
        if dev is None or dev.deleted:
            raise SdctrError(f"container {cid[:12]} has no thin device (was it created by sdctr?)")
        return dev

    # --- the Snapshotter interface ----------------------------------------------------------------

    def unpack(self, image: LayeredImage) -> dict[str, int]:
        """Each missing layer: a snapshot of the one below, mounted, the layer applied, marked
        initialized. Under the pool's lock, so racing callers unpack once."""
        if len(image.layers) != len(image.layer_blobs):
            raise SdctrError(f"image {image.name}: {len(image.layers)} diff ids for "
                             f"{len(image.layer_blobs)} layer blobs")
        sizes: dict[str, int] = {}
        with self._locked():
            self.up()
            parent = self.load("base")
            for i, blob in enumerate(image.layer_blobs):
                chain = image.layers[:i + 1]
                dev = self.load(layer_name(chain))
                if dev is None or not dev.initialized or dev.deleted:
                    if dev is not None:
                        self._delete(dev)
                    assert parent is not None
                    dev = self._new_device(layer_name(chain), parent, layers=chain)
                    sizes[blob] = self._apply(dev, image.name, blob, chain[-1])
                parent = dev
        return sizes

    def _apply(self, dev: Device, image: str, blob: str, diff_id: str) -> int:
        from sdctr.oci.layers import apply_layer

        try:
            try:
                f = open(self.paths.blob(blob), "rb")
            except FileNotFoundError:
                raise SdctrError(f"image {image}: layer blob {blob} is missing from the store",
                                 hint="remove the image and import or pull it again") from None
            self._activate(dev)
            with f:
                size: int = self._with_mounted(dev, lambda root: apply_layer(
                    f, root, image=image, digest=blob, diff_id=diff_id, onto_lower=True).size)
            self._deactivate(dev.name)
            _step("unpack:applied")
            self._save(dev.replace(initialized=True))
        except BaseException:
            self._delete(dev)
            raise
        return size

    def prepare(self, cid: str, layers: tuple[str, ...]) -> None:
        name = container_name(cid)
        with self._locked():
            self.up()
            dev = self.load(name)
            if dev is not None and not dev.deleted:
                return
            if dev is not None:
                self._delete(dev)
            origin = self.load(layer_name(layers))
            if origin is None or not origin.initialized or origin.deleted:
                top = layers[-1] if layers else "(base)"
                raise SdctrError(f"layer {top} is not unpacked in pool {self.pool}",
                                 hint="was its image removed? pull or import it again")
            self._new_device(name, origin, initialized=True, layers=layers)

    def rootfs(self, cid: str, layers: tuple[str, ...], target: Path) -> Mount:
        return self._mount_of(self._container(cid), target)

    def activate_command(self, cid: str, layers: tuple[str, ...], target: Path) -> list[str]:
        """`dmsetup create` unless the device is there, then the mount unless it is mounted; a
        pool not yet up (after a reboot, before its unit) is brought up by sdctr first."""
        dev = self._container(cid)
        m = self.rootfs(cid, layers, target)
        script = ('[ -b "$3" ] || "$4" -m sdctr.storage.devicemapper up "$5" || exit; '
                  '[ -b "$2" ] || dmsetup create "${2#/dev/mapper/}" --table "$6" || exit; '
                  '{ [ -d "$1" ] || mkdir -p "$1"; } && { mountpoint -q "$1" || { shift 6; exec "$@"; }; }')
        return ["/bin/sh", "-c", script, "sh", str(target), self.dm_path(dev.name), dmsetup.path(self.pool),
                sys.executable, str(self.paths.root), self._table(dev), *m.argv()]

    def activation_env(self, cid: str, layers: tuple[str, ...], target: Path) -> dict[str, str]:
        """activate_command's values as sdctr/rootfs.sh reads them from the container's
        rootfs.env (units/sdctr-rootfs@.service cannot be handed an argv)."""
        dev = self._container(cid)
        m = self.rootfs(cid, layers, target)
        return {"ROOTFS_DEVICE": self.dm_path(dev.name), "ROOTFS_POOL": dmsetup.path(self.pool),
                "ROOTFS_TABLE": self._table(dev), "ROOTFS_FSTYPE": m.type,
                "ROOTFS_OPTIONS": ",".join(m.options), "ROOTFS_TARGET": str(target),
                "ROOTFS_PYTHON": sys.executable, "ROOTFS_STATE": str(self.paths.root)}

    def setup(self) -> list[str]:
        """The pool up before a boot's first container (as units/sdctr-thinpool.service does):
        what it made, [] where it was up."""
        made = [] if dmsetup.exists(self.pool) else [f"thin pool {self.pool}"]
        self.up()
        return made

    def removal_env(self, cid: str) -> dict[str, str]:
        """What sdctr/rootfs.sh needs to delete a --rm container's device as _delete does: the
        lock, the transaction record and the device's JSON (its id is in ROOTFS_TABLE)."""
        return {"ROOTFS_LOCK": str(self.base / "lock"), "ROOTFS_TRANSACTIONS": str(self.record_path),
                "ROOTFS_METADATA": str(self._json(container_name(cid)))}

    def view(self, cid: str, layers: tuple[str, ...], target: Path) -> Mount:
        """The container's device, activated, as a read-only mount (for export of a stopped
        container: a running one's own mount is what the caller reads)."""
        with self._locked():
            self.up()
            dev = self._container(cid)
            self._activate(dev)
        return self._mount_of(dev, target, "ro")

    def deactivate(self, cid: str, target: Path) -> None:
        unmount(target)
        self.release(cid)

    def release(self, cid: str) -> None:
        """The device view() activated, once its mount is gone (export's, in tar's own mount
        namespace, goes with tar): removed unless mounted, by a start since or an export still
        reading it; a brief open by someone else defers the removal to the last close."""
        name = container_name(cid)
        if not self._mounted_at(name):
            with self._locked():
                self._deactivate(name, defer=True)

    def snapshot_dir(self, cid: str) -> Path | None:
        return None  # a device, not a directory: poststop leaves it to the hook

    def _unused_container_device(self, cid: str) -> Device | None:
        """The container's device as recorded, refused if in use, with the pool up; or None. The
        caller holds the lock."""
        dev = self.load(container_name(cid))
        if dev is None:
            return None
        self._check_unused(cid, dev)
        self.up()
        return dev

    def remove(self, cid: str) -> None:
        with self._locked():
            dev = self._unused_container_device(cid)
            dev = dev and self.load(dev.name)  # the pool's recovery may have finished its deletion
            if dev is not None:
                self._delete(dev)

    def reset(self, cid: str) -> None:
        """A fresh snapshot of the same origin (--ephemeral)."""
        with self._locked():
            dev = self._unused_container_device(cid)
            if dev is None:
                return
            origin = self.load(dev.origin)
            if origin is None:
                raise SdctrError(f"container {cid[:12]}: its image layer {dev.origin} is gone "
                                 f"from pool {self.pool}")
            self._check_space()  # before the old snapshot goes: a refusal keeps it
            self._delete(dev)
            self._new_device(dev.name, origin, initialized=True, layers=dev.layers)

    def prune(self, keep: Collection[str]) -> list[str]:
        """Deletes layer devices with a diff id outside ``keep`` that no container was made from;
        returns their top diff ids."""
        removed: list[str] = []
        if not self.meta_dir.is_dir():
            return removed
        with self._locked():
            devices = self.devices()
            origins = {d.origin for d in devices if d.name.startswith("ctr-")}
            for dev in sorted(devices, key=lambda d: len(d.layers)):
                if not dev.name.startswith("layer-") or dev.name in origins:
                    continue
                if all(diff in keep for diff in dev.layers) or self._mounted_at(dev.name):
                    continue
                self.up()
                self._delete(dev)
                removed.append(dev.layers[-1])
        return removed

    def _check_unused(self, cid: str, dev: Device) -> None:
        for target in self._mounted_at(dev.name):
            raise SdctrError(f"container {cid[:12]}: its root file system is still mounted at {target}",
                             hint="stop the container first")

    # --- beyond the interface -------------------------------------------------------------------

    def status(self) -> list[tuple[str, str | int]]:
        """Docker's `info` lines for this driver (its DriverStatus); sizes as byte counts, for the
        caller to write. Reads only: a pool that is not up is said to be so, not brought up."""
        base = self.load("base")
        rows: list[tuple[str, str | int]] = [
            ("Pool Name", self.pool), ("Pool Blocksize", BLOCK_SECTORS * dmsetup.SECTOR),
            ("Base Device Size", base.size if base else self.settings.base_size),
            ("Backing Filesystem", base.filesystem if base else self.settings.filesystem or "(not made yet)"),
            *self._origin_rows(),
            ("Thin Pool Minimum Free Space", f"{self.settings.min_free}%"),
            ("Thin Devices", len(self.devices())),
        ]
        try:
            active = dmsetup.exists(self.pool)
        except SdctrError as e:
            return [*rows, ("Pool Status", f"unavailable: {e}")]
        if not active:
            made = (self.pool_dir / "data").exists() or self.settings.thinpool
            return [*rows, ("Pool Status", "not active (the next container on this driver brings it up)"
                            if made else "not made yet (the first container on this driver makes it)")]
        meta, data, mode = dmsetup.pool_usage(self.pool)
        block = BLOCK_SECTORS * dmsetup.SECTOR
        if self.settings.thinpool:  # LVM's chunk size (lvcreate --chunksize)
            block = dmsetup.pool_block_sectors(self.pool) * dmsetup.SECTOR
            rows[1] = ("Pool Blocksize", block)
        for what, (used, total), size in (("Data", data, block), ("Metadata", meta, METADATA_BLOCK)):
            rows += [(f"{what} Space Used", used * size), (f"{what} Space Total", total * size),
                     (f"{what} Space Available", (total - used) * size)]
        return [*rows, ("Pool Status", mode)]

    def _origin_rows(self) -> list[tuple[str, str | int]]:
        if self.settings.thinpool:
            return [("Pool Origin", f"LVM thin pool {self.settings.thinpool}")]
        return [("Pool Origin", "loop files"), ("Data file", str(self.pool_dir / "data")),
                ("Metadata file", str(self.pool_dir / "metadata"))]

    def down(self) -> None:
        """Every device of the pool and the pool removed, its loop devices detached (tests; a
        host shutting down). Refused while any of them is mounted."""
        with self._locked():
            if not dmsetup.exists(self.pool):
                return
            ours = [n for n in dmsetup.names() if n.startswith(self.prefix + "-") and n != self.pool]
            held = [m.target for m in mounts() if m.source in {dmsetup.path(n) for n in ours}]
            if held:
                raise SdctrError(f"pool {self.pool}: {held[0]} is still mounted")
            for n in ours:
                dmsetup.remove(n)
            self._up = False
            if self.settings.thinpool:  # LVM's: it stays as LVM left it (lvchange -an takes it down)
                return
            loops = [_loop_of(self.pool_dir / f) for f in ("data", "metadata")]
            dmsetup.remove(self.pool)
            for loop in loops:
                if loop:
                    _detach(loop)
            self._up = False


def _which(cmd: str) -> bool:
    import shutil

    return shutil.which(cmd, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") is not None


def _loop_of(f: Path) -> str | None:
    from sdctr.external import run

    out = run(["losetup", "-j", str(f)]).stdout.strip()
    return out.split(":", 1)[0] if out else None


def _attach(f: Path) -> str:
    from sdctr.external import run

    return run(["losetup", "-f", "--show", str(f)]).stdout.strip()


def _detach(loop: str) -> None:
    from sdctr.external import run

    run(["losetup", "-d", loop], check=False)


def main(argv: list[str]) -> int:
    """`python3 -m sdctr.storage.devicemapper up|down ROOT`: what the activation command runs
    when the pool is not up (after a reboot, before its unit ran), and a pool's teardown."""
    from sdctr.log import SdctrError as Error

    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print("usage: python3 -m sdctr.storage.devicemapper up|down ROOT", file=sys.stderr)
        return 2
    try:
        snap = DeviceMapperSnapshotter(Paths.from_root(argv[1]))
        snap.up() if argv[0] == "up" else snap.down()
    except Error as e:
        print(f"sdctr: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
