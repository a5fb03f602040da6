"""Snapshotters: a writable root file system per container over an image's read-only layers.

    <root>/blobs/sha256/<hex>                 the content store (layer blobs as given)
    <root>/overlay/layers/<hex>/              a layer unpacked; <hex> of its diff id
    <root>/overlay/containers/<cid>/upper     a container's writable layer
    <root>/overlay/containers/<cid>/work      overlayfs' scratch directory

Only the overlay driver exists today; the device-mapper thin-pool driver comes behind the same
Snapshotter interface. This module knows images only through the LayeredImage protocol, so it
imports nothing upstream of it (DESIGN.md: data flows one way).
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Collection
from pathlib import Path

from sdctr.external import run
from sdctr.log import SdctrError, debug
from sdctr.oci.digest import digest_hex
from sdctr.paths import Paths

TYPE_CHECKING = False  # typing costs ~3 ms to import, and run needs none of it
if TYPE_CHECKING:  # the snapshotter interface, for the type checker (the drivers need no base class)
    from typing import Protocol

    class LayeredImage(Protocol):
        """What a snapshotter needs of an image (sdctr.images.Image satisfies it)."""

        @property
        def name(self) -> str: ...
        @property
        def layers(self) -> tuple[str, ...]: ...  # diff ids, bottom first
        @property
        def layer_blobs(self) -> tuple[str, ...]: ...  # blob digests, same order

    class Snapshotter(Protocol):
        def ensure_layers(self, image: LayeredImage) -> dict[str, int]: ...
        def prepare(self, cid: str, image: LayeredImage) -> None: ...
        def mount(self, cid: str, image: LayeredImage, target: Path) -> None: ...
        def mount_command(self, cid: str, image: LayeredImage, target: Path) -> list[str]: ...
        def mount_readonly(self, cid: str, image: LayeredImage, target: Path) -> None: ...
        def unmount(self, target: Path) -> None: ...
        def remove(self, cid: str) -> None: ...
        def snapshot_dir(self, cid: str) -> Path | None: ...
        def reset(self, cid: str) -> None: ...
        def prune_layers(self, keep: Collection[str]) -> list[str]: ...


_CID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# mount(8) splits options at commas, overlayfs splits lowerdir at colons and takes backslash
# escapes; rather than escape for two parsers, paths carrying any of these are refused.
_UNSAFE_IN_OPTIONS = re.compile(r"[,:\\\"'\s=]")
_OPTIONS_MAX = 4095  # the kernel copies mount data in one page
STALE_TMP = 24 * 3600  # seconds: a temporary file or directory this old was left by a killed writer


def driver(paths: Paths) -> Snapshotter:
    """The configured snapshotter; "auto" (device-mapper where dm-thin works) comes later."""
    return OverlaySnapshotter(paths)


class OverlaySnapshotter:
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

    def ensure_layers(self, image: LayeredImage) -> dict[str, int]:
        """Unpacks each missing layer into a temp directory, then renames it into place: two
        callers racing both unpack, one rename wins, the other discards its copy. Returns the
        unpacked sizes of the layers unpacked now (blob -> bytes), for the image's SIZE."""
        sizes = {}
        if len(image.layers) != len(image.layer_blobs):
            raise SdctrError(f"image {image.name}: {len(image.layers)} diff ids for "
                             f"{len(image.layer_blobs)} layer blobs")
        for diff_id, blob in zip(image.layers, image.layer_blobs):
            final = self.layer_dir(diff_id)
            if final.is_dir():
                continue
            self._make_base()
            import shutil
            import tempfile  # with shutil, bz2 and lzma: ~3 ms that `run` does without

            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name[:12]}-", dir=self.layers_dir))
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
        return sizes

    def prepare(self, cid: str, image: LayeredImage) -> None:
        """Creates the writable layer; its top directory carries the image root's owner and mode,
        because overlayfs shows the upper directory's attributes as the container's "/"."""
        d = self.container_dir(cid)
        upper, work = d / "upper", d / "work"
        if upper.is_dir() and work.is_dir():
            return
        self._make_base()
        d.mkdir(parents=True, exist_ok=True)
        work.mkdir(mode=0o700, exist_ok=True)
        upper.mkdir(mode=0o755, exist_ok=True)
        top = self.layer_dir(image.layers[-1]) if image.layers else None
        if top is not None and top.is_dir():
            st = os.stat(top)
            os.chown(upper, st.st_uid, st.st_gid)
            os.chmod(upper, st.st_mode & 0o7777)

    def mount(self, cid: str, image: LayeredImage, target: Path) -> None:
        """Mounts the container's snapshot at ``target``; a no-op if it is mounted there already."""
        self.ensure_layers(image)
        self.prepare(cid, image)
        upper = self.container_dir(cid) / "upper"
        options = self.mount_options(cid, image)
        target.mkdir(parents=True, exist_ok=True)
        here = mounts_at(target)
        if here:
            top = here[-1]
            if top.fstype == "overlay" and f"upperdir={upper}" in top.options.split(","):
                return
            raise SdctrError(f"{target} already has a {top.fstype} mount from {top.source}",
                             hint=f"unmount it first: umount {target}")
        run(["mount", "-t", "overlay", "-o", options, "overlay", str(target)])

    def mount_options(self, cid: str, image: LayeredImage) -> str:
        """The overlay mount's options for a prepared container."""
        d = self.container_dir(cid)
        return self._options(image, self._lowers(image), upperdir=d / "upper", workdir=d / "work")

    def mount_readonly(self, cid: str, image: LayeredImage, target: Path) -> None:
        """The container's file system, read-only, at ``target`` (for export): its writable layer
        becomes the top lower layer, so its whiteouts hide what it deleted, and nothing is written."""
        self.ensure_layers(image)
        upper = self.container_dir(cid) / "upper"
        if not upper.is_dir():
            raise SdctrError(f"container {cid[:12]} has no writable layer (was it created by sdctr?)")
        options = self._options(image, [upper, *self._lowers(image)])
        run(["mount", "-t", "overlay", "-o", f"ro,{options}", "overlay", str(target)])

    def _lowers(self, image: LayeredImage) -> list[Path]:
        """The image's unpacked layers, top first, as overlayfs stacks lowerdir."""
        return [self.layer_dir(diff) for diff in reversed(image.layers)] or [self._empty()]

    def _options(self, image: LayeredImage, lowers: list[Path], **dirs: Path) -> str:
        """lowerdir and ``dirs`` (upperdir, workdir) as mount options; paths that mount(8) or
        overlayfs would split are refused rather than escaped for two parsers."""
        for p in (*lowers, *dirs.values()):
            if _UNSAFE_IN_OPTIONS.search(str(p)):
                raise SdctrError(f"{p}: overlay cannot take a path with commas, colons, quotes, '=', "
                                 "backslashes or white space", hint="use a --root without them")
        options = ",".join([f"lowerdir={':'.join(map(str, lowers))}", *(f"{k}={v}" for k, v in dirs.items())])
        if len(options) > _OPTIONS_MAX:
            raise SdctrError(f"image {image.name}: {len(lowers)} layers do not fit in one overlay mount "
                             f"({len(options)} bytes of options, the kernel takes {_OPTIONS_MAX})")
        return options

    def mount_command(self, cid: str, image: LayeredImage, target: Path) -> list[str]:
        """mount() as one command the unit can run itself, without starting Python: for a
        container prepared at create time. Idempotent: an existing mount at target is kept."""
        # the test is a builtin: no mkdir process once the directory exists (created with the
        # container; a reboot empties /run)
        script = ('{ [ -d "$1" ] || mkdir -p "$1"; } && '
                  '{ mountpoint -q "$1" || exec mount -t overlay -o "$2" overlay "$1"; }')
        return ["/bin/sh", "-c", script, "sh", str(target), self.mount_options(cid, image)]

    def unmount(self, target: Path) -> None:
        """Unmounts everything stacked at ``target``; lazily only when the kernel says busy,
        because a lazy unmount hides a leak instead of reporting it."""
        for _ in range(16):
            if not mounts_at(target):
                return
            r = run(["umount", str(target)], check=False)
            if r.returncode == 0:
                continue
            if "busy" in r.stderr.lower():
                debug(f"{target} is busy; detaching it lazily")
                run(["umount", "--lazy", str(target)])
            elif mounts_at(target):  # a failure that someone else's unmount did not explain
                raise SdctrError(f"cannot unmount {target}: {r.stderr.strip()}")
        raise SdctrError(f"{target} is still mounted after 16 unmounts")

    def snapshot_dir(self, cid: str) -> Path | None:
        """The one directory whose deletion removes the container's snapshot once it is unmounted
        (the unit's shell can do that without Python); None where removal takes more."""
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

    def prune_layers(self, keep: Collection[str]) -> list[str]:
        """Deletes unpacked layers whose diff id is not in ``keep`` and that no mount uses."""
        import shutil

        removed: list[str] = []
        if not self.layers_dir.is_dir():
            return removed
        in_use = " ".join(m.options for m in mounts() if m.fstype == "overlay")
        for p in self.layers_dir.iterdir():
            if p.name.startswith(".tmp-"):
                if time.time() - p.stat().st_mtime > STALE_TMP:
                    shutil.rmtree(p, ignore_errors=True)
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

    def _make_base(self) -> None:
        # 0700 as Docker does: unpacked layers hold setuid binaries that no host user should reach
        self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.layers_dir.mkdir(exist_ok=True)

    def _empty(self) -> Path:
        """The lower directory of an image without layers (overlayfs needs at least one)."""
        p = self.base / "empty"
        p.mkdir(mode=0o755, parents=True, exist_ok=True)
        return p


# --- /proc/self/mountinfo --------------------------------------------------------------------------

class MountInfo:
    __slots__ = ("fstype", "options", "source", "target")

    def __init__(self, target: Path, fstype: str, source: str, options: str):
        self.target, self.fstype, self.source, self.options = target, fstype, source, options


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts() -> list[MountInfo]:
    """Every mount this process sees, in mount order (the last one at a path is on top)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            if len(fields) < 5 or len(rest) < 3:
                continue
            out.append(MountInfo(Path(_unescape(fields[4])), rest[0], _unescape(rest[1]), _unescape(rest[2])))
    return out


def mounts_at(path: Path) -> list[MountInfo]:
    real = Path(os.path.realpath(path))
    return [m for m in mounts() if m.target == real]


def mounts_under(path: Path) -> list[MountInfo]:
    """Mounts at or below ``path`` (tests use it to prove nothing was left mounted)."""
    real = Path(os.path.realpath(path))
    return [m for m in mounts() if m.target == real or real in m.target.parents]
