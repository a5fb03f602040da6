"""The overlay driver: each layer unpacked once into a directory, a container's snapshot an upper
and a work directory over them (the Snapshotter interface is in sdctr.storage.snapshotter).

    <root>/overlay/layers/<hex>/              a layer unpacked; <hex> of its diff id
    <root>/overlay/containers/<cid>/upper     a container's writable layer
    <root>/overlay/containers/<cid>/work      overlayfs' scratch directory
    <root>/overlay/empty/                     the lower directory of an image without layers

Activation is one `mount -t overlay`; deactivation one unmount; the snapshot is one directory.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from sdctr.log import SdctrError, debug
from sdctr.oci.digest import digest_hex
from sdctr.paths import Paths
from sdctr.storage.mountinfo import mounts
from sdctr.storage.snapshotter import Mount, unmount

TYPE_CHECKING = False  # typing costs ~3 ms to import, and run needs none of it
if TYPE_CHECKING:
    from collections.abc import Collection

    from sdctr.storage.snapshotter import LayeredImage

_CID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# mount(8) splits options at commas, overlayfs splits lowerdir at colons and takes backslash
# escapes; rather than escape for two parsers, paths carrying any of these are refused.
_UNSAFE_IN_OPTIONS = re.compile(r"[,:\\\"'\s=]")
_OPTIONS_MAX = 4095  # the kernel copies mount data in one page


class OverlaySnapshotter:
    name = "overlay"

    def __init__(self, paths: Paths):
        self.paths = paths
        # resolved, so the paths in mount options match what /proc/self/mountinfo shows
        self.base = Path(os.path.realpath(paths.root)) / "overlay"
        self.layers_dir = self.base / "layers"

    def layer_dir(self, diff_id: str) -> Path:
        return self.layers_dir / digest_hex(diff_id)

    def container_dir(self, cid: str) -> Path:
        if not _CID.fullmatch(cid):
            raise SdctrError(f"{cid!r} is not a container id")
        return self.base / "containers" / cid

    def unpack(self, image: LayeredImage) -> dict[str, int]:
        """Unpacks each missing layer into a temp directory, then renames it into place: two
        callers racing both unpack, one rename wins, the other discards its copy. Returns the
        unpacked sizes of the layers unpacked now (blob -> bytes), for the image's SIZE."""
        sizes: dict[str, int] = {}
        if len(image.layers) != len(image.layer_blobs):
            raise SdctrError(f"image {image.name}: {len(image.layers)} diff ids for "
                             f"{len(image.layer_blobs)} layer blobs")
        for diff_id, blob in zip(image.layers, image.layer_blobs):
            final = self.layer_dir(diff_id)
            if final.is_dir():
                continue
            self._make_base()
            import shutil

            self.sweep_dead_unpacks()
            lock, tmp = self._locked_temp_dir(final.name[:12])
            try:
                os.chmod(tmp, 0o755)  # the rootfs "/" when the layer has no "./" entry
                try:
                    f = open(self.paths.blob(blob), "rb")
                except FileNotFoundError:
                    raise SdctrError(f"image {image.name}: layer blob {blob} is missing from the store",
                                     hint="remove the image and import or pull it again") from None
                with f:
                    from sdctr.oci.layers import apply_layer  # tarfile: only when a layer is missing

                    sizes[blob] = apply_layer(f, tmp, image=image.name, digest=blob, diff_id=diff_id).size
                try:
                    os.rename(tmp, final)
                except OSError as e:
                    if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                        raise
                    debug(f"layer {diff_id} was unpacked concurrently; discarding ours")
                    shutil.rmtree(tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            finally:
                os.close(lock)
        return sizes

    def _locked_temp_dir(self, label: str) -> tuple[int, Path]:
        """An unpack directory that its writer holds a lock on while it lives (its fd, its path):
        its lock free means its writer is dead (sweep_dead_unpacks). One a sweep deleted before
        we locked it (or even opened it: 20 first runs of an image at once) is made again."""
        import fcntl
        import tempfile  # with shutil, bz2 and lzma: ~3 ms that `run` does without

        while True:
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{label}-", dir=self.layers_dir))
            try:
                fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:  # a concurrent sweep took it between mkdtemp and the lock
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink:
                return fd, tmp
            os.close(fd)

    def sweep_dead_unpacks(self) -> list[str]:
        """Deletes the unpack directories whose writer is gone (a `run` or `create` killed with
        SIGKILL while it unpacked): the writer holds a lock on each (DESIGN.md, invariant 4).
        The names deleted."""
        import shutil

        from sdctr.state import remove_unless_locked

        dirs = self.layers_dir.glob(".tmp-*") if self.layers_dir.is_dir() else ()
        swept = [tmp.name for tmp in dirs if remove_unless_locked(tmp, shutil.rmtree)]
        return swept

    def prepare(self, cid: str, layers: tuple[str, ...]) -> None:
        """Creates the writable layer; its top directory carries the image root's owner and mode,
        because overlayfs shows the upper directory's attributes as the container's "/"."""
        d = self.container_dir(cid)
        upper, work = d / "upper", d / "work"
        self._lowers(layers)  # every layer unpacked, or a refusal that says which is missing
        if upper.is_dir() and work.is_dir():
            return
        self._make_base()
        d.mkdir(parents=True, exist_ok=True)
        work.mkdir(mode=0o700, exist_ok=True)
        if not upper.is_dir():  # owner and mode set before it is "upper": a kill leaves no wrong "/"
            fresh = d / ".upper"
            fresh.mkdir(mode=0o755, exist_ok=True)
            if layers:
                st = os.stat(self.layer_dir(layers[-1]))
                os.chown(fresh, st.st_uid, st.st_gid)
                os.chmod(fresh, st.st_mode & 0o7777)
            os.rename(fresh, upper)

    def rootfs(self, cid: str, layers: tuple[str, ...], target: Path) -> Mount:
        d = self.container_dir(cid)
        return Mount("overlay", "overlay", target,
                     self._options(self._lowers(layers), upperdir=d / "upper", workdir=d / "work"))

    def activate_command(self, cid: str, layers: tuple[str, ...], target: Path) -> list[str]:
        """The mount, as one command the unit runs without starting Python: for a container
        prepared at create time."""
        return self.rootfs(cid, layers, target).command()

    def view(self, cid: str, layers: tuple[str, ...], target: Path) -> Mount:
        """The container's file system, read-only (for export): its writable layer becomes the
        top lower layer, so its whiteouts hide what it deleted, and nothing is written. Stacking
        it on a live writable layer is undefined in overlayfs: the caller reads a running
        container's own mount instead."""
        upper = self.container_dir(cid) / "upper"
        if not upper.is_dir():
            raise SdctrError(f"container {cid[:12]} has no writable layer (was it created by sdctr?)")
        return Mount("overlay", "overlay", target, ("ro", *self._options([upper, *self._lowers(layers)])))

    def deactivate(self, cid: str, target: Path) -> None:
        unmount(target)

    def release(self, cid: str) -> None:
        """A view is its mount alone: nothing to give back once it is gone."""

    def _lowers(self, layers: tuple[str, ...]) -> list[Path]:
        """The unpacked layers, top first, as overlayfs stacks lowerdir."""
        lowers = [self.layer_dir(diff) for diff in reversed(layers)]
        for diff, p in zip(reversed(layers), lowers):
            if not p.is_dir():
                raise SdctrError(f"layer {diff} is not unpacked in {self.layers_dir}",
                                 hint="was its image removed? pull or import it again")
        return lowers or [self._empty()]

    def _options(self, lowers: list[Path], **dirs: Path) -> tuple[str, ...]:
        """lowerdir and ``dirs`` (upperdir, workdir) as mount options; paths that mount(8) or
        overlayfs would split are refused rather than escaped for two parsers."""
        for p in (*lowers, *dirs.values()):
            if _UNSAFE_IN_OPTIONS.search(str(p)):
                raise SdctrError(f"{p}: overlay cannot take a path with commas, colons, quotes, '=', "
                                 "backslashes or white space", hint="use a --root without them")
        options = (f"lowerdir={':'.join(map(str, lowers))}", *(f"{k}={v}" for k, v in dirs.items()))
        size = len(",".join(options)) + len(",ro")
        if size > _OPTIONS_MAX:
            raise SdctrError(f"{len(lowers)} layers do not fit in one overlay mount "
                             f"({size} bytes of options, the kernel takes {_OPTIONS_MAX})")
        return options

    def snapshot_dir(self, cid: str) -> Path | None:
        return self.container_dir(cid)

    def remove(self, cid: str) -> None:
        """Deletes the writable layer. Refuses while it is mounted or has a mount inside it:
        deleting through a mount would delete someone else's files."""
        import shutil

        d = self.container_dir(cid)
        if not d.exists():
            return
        self._check_unused(cid)
        shutil.rmtree(d)  # fd-based and symlink-safe on Linux (shutil.rmtree.avoids_symlink_attacks)

    def reset(self, cid: str) -> None:
        """Discards the writable layer (--ephemeral): the next mount starts from the image."""
        import shutil

        d = self.container_dir(cid)
        if not d.exists():
            return
        self._check_unused(cid)
        for sub in ("upper", "work"):
            p = d / sub
            if p.exists():
                st = os.stat(p)
                shutil.rmtree(p)
                p.mkdir()
                os.chown(p, st.st_uid, st.st_gid)
                os.chmod(p, st.st_mode & 0o7777)

    def prune(self, keep: Collection[str]) -> list[str]:
        """Deletes unpacked layers whose diff id is not in ``keep`` and that no mount uses, and
        unpack directories a killed unpack left."""
        import shutil

        removed: list[str] = []
        if not self.layers_dir.is_dir():
            return removed
        self.sweep_dead_unpacks()
        in_use = " ".join(m.options for m in mounts() if m.fstype == "overlay")
        for p in self.layers_dir.iterdir():
            if p.name.startswith(".tmp-"):
                continue
            diff_id = f"sha256:{p.name}"
            if diff_id in keep or str(p) in in_use:
                continue
            shutil.rmtree(p)
            removed.append(diff_id)
        return removed

    def _check_unused(self, cid: str) -> None:
        d = self.container_dir(cid)
        upper = str(d / "upper")
        for m in mounts():
            if m.target == d or d in m.target.parents:
                raise SdctrError(f"refusing to remove {d}: {m.target} is mounted inside it",
                                 hint=f"unmount it first: umount {m.target}")
            options = m.options.split(",")
            lowers = next((o[len("lowerdir="):].split(":") for o in options if o.startswith("lowerdir=")), [])
            if m.fstype == "overlay" and (f"upperdir={upper}" in options or upper in lowers):  # export's too
                raise SdctrError(f"container {cid[:12]}: its root file system is still mounted at {m.target}",
                                 hint="stop the container first")

    def setup(self) -> list[str]:
        """What the driver needs before a boot's first container (sdctr-setup.service's `sdctr
        system setup`): its directories, and overlayfs known to the kernel (a module until it is
        first mounted: loaded now, not by the first container's mount). What it made, [] if
        nothing: a second call costs two stats and a read."""
        made = [] if self.layers_dir.is_dir() else [f"storage directory {self.base}"]
        self._make_base()
        if not _overlay_known():
            from sdctr.external import run

            run(["modprobe", "overlay"], check=False)
            if not _overlay_known():
                raise SdctrError("the kernel has no overlay file system (overlayfs)",
                                 hint="load it: modprobe overlay (package kernel-modules on RHEL)")
            made.append("overlay module")
        return made

    def _make_base(self) -> None:
        # 0700 as Docker does: unpacked layers hold setuid binaries that no host user should reach
        self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.layers_dir.mkdir(exist_ok=True)

    def _empty(self) -> Path:
        """The lower directory of an image without layers (overlayfs needs at least one)."""
        p = self.base / "empty"
        p.mkdir(mode=0o755, parents=True, exist_ok=True)
        return p


def _overlay_known() -> bool:
    with open("/proc/filesystems") as f:
        return any(line.split()[-1:] == ["overlay"] for line in f)
