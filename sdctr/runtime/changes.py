"""A container's changes to its image: its writable layer, read for `diff` and packed for `commit`.

The overlay driver keeps them in one upper directory: a file there was added (A) or changed (C,
when a lower layer has that path too), a whiteout (a 0/0 character device) deleted (D) what the
layers below had, and a directory marked opaque hides everything below it in those layers. For a
commit, the same walk writes an OCI layer: whiteouts become `.wh.NAME` entries and an opaque
directory a `.wh..wh..opq`, as the image spec and Docker write them.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO, Any

from sdctr.log import SdctrError
from sdctr.oci.layers import OPAQUE, WHITEOUT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdctr.image.store import Image
    from sdctr.paths import Paths
    from sdctr.spec import ContainerSpec

OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


def layers(paths: Paths, spec: ContainerSpec) -> tuple[Path, list[Path]]:
    """(the writable layer, the image's layers top first) of an overlay container."""
    from sdctr.runtime import hooks
    from sdctr.storage.overlay import OverlaySnapshotter

    snap = hooks.snapshotter_of(paths, spec)
    if not isinstance(snap, OverlaySnapshotter):
        raise SdctrError(f"container {spec.name}: its storage driver {snap.name!r} keeps no separate "
                         "writable layer", hint="diff and commit need the overlay driver")
    upper = snap.container_dir(spec.id) / "upper"
    if not upper.is_dir():
        raise SdctrError(f"container {spec.name} has no writable layer")
    return upper, [snap.layer_dir(d) for d in reversed(hooks.layers_of(paths, spec))]


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: Path) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _in_lowers(lowers: list[Path], rel: str) -> bool:
    """Whether the image has `rel`: the topmost layer that mentions it decides."""
    for layer in lowers:
        try:
            st = os.lstat(layer / rel)
        except (FileNotFoundError, NotADirectoryError):
            continue
        return not is_whiteout(st)
    return False


def mount_points(spec: ContainerSpec) -> set[str]:
    """What the init makes in the writable layer only to mount over (as Docker's init layer has
    them): not the container's changes, so neither `diff` nor `commit` shows them."""
    return {"etc/hostname", "etc/hosts", "etc/resolv.conf", "dev", "proc", "sys",
            *(m.target.strip("/") for m in spec.mounts)}


def walk(upper: Path, skip: Collection[str] = ()) -> Iterator[tuple[str, os.stat_result, bool]]:
    """(path below the layer, its lstat, opaque) of every entry but `skip`, parents first, sorted."""
    def entries(d: Path, rel: str) -> Iterator[tuple[str, os.stat_result, bool]]:
        for name in sorted(os.listdir(d)):
            p, r = d / name, f"{rel}/{name}" if rel else name
            if r in skip:
                continue
            st = os.lstat(p)
            is_dir = stat.S_ISDIR(st.st_mode)
            yield r, st, is_dir and is_opaque(p)
            if is_dir:
                yield from entries(p, r)
    return entries(upper, "")


def changes(upper: Path, lowers: list[Path], skip: Collection[str] = ()
            ) -> list[tuple[str, str]]:
    """`docker diff`'s lines, ("A"|"C"|"D", "/path"), sorted by path. A directory overlayfs only
    copied up on the way to a change below it is C when that change is shown, or its own owner
    or mode changed; else it is no change of the container's."""
    out = []
    hidden: list[str] = []  # opaque directories: below them, the image has nothing
    same_dirs = set()  # copied up, owner and mode as in the image
    for rel, st, opaque in walk(upper, skip):
        if is_whiteout(st):
            out.append(("D", f"/{rel}"))
            continue
        under_opaque = any(rel.startswith(h + "/") for h in hidden)
        if opaque:
            hidden.append(rel)
        existed = not under_opaque and _in_lowers(lowers, rel)
        if existed and stat.S_ISDIR(st.st_mode) and not opaque and _same_meta(lowers, rel, st):
            same_dirs.add(f"/{rel}")
        out.append(("C" if existed else "A", f"/{rel}"))
    shown = [c for c in out if c[1] not in same_dirs
             or any(o[1].startswith(c[1] + "/") for o in out if o[1] not in same_dirs)]
    return sorted(shown, key=lambda c: c[1])


def _same_meta(lowers: list[Path], rel: str, st: os.stat_result) -> bool:
    for layer in lowers:
        try:
            low = os.lstat(layer / rel)
        except (FileNotFoundError, NotADirectoryError):
            continue
        return (low.st_mode, low.st_uid, low.st_gid) == (st.st_mode, st.st_uid, st.st_gid)
    return False


def write_layer(upper: Path, out: IO[bytes], skip: Collection[str] = ()) -> None:
    """The writable layer as an uncompressed OCI layer tar (whiteouts as .wh. entries)."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, st, opaque in walk(upper, skip):
            path = upper / rel
            if is_whiteout(st):
                parent, _, name = rel.rpartition("/")
                info = tarfile.TarInfo(f"{parent}/{WHITEOUT}{name}" if parent else f"{WHITEOUT}{name}")
                info.mtime = int(st.st_mtime)
                tar.addfile(info)
                continue
            info = tar.gettarinfo(str(path), arcname=rel)
            info.uname = info.gname = ""  # numeric owners, as the layer was made
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            if opaque:
                marker = tarfile.TarInfo(f"{rel}/{OPAQUE}")
                marker.mtime = int(st.st_mtime)
                tar.addfile(marker)


def commit(paths: Paths, spec: ContainerSpec, ref: str | None, *, changes: dict[str, Any],
           comment: str = "", author: str = "") -> Image:
    """`docker commit`: the image's layers and the writable layer as a new one, with the
    container's configuration (its command, environment, working directory, user, labels) and
    `changes` (Dockerfile instructions, as parsed by image.store.parse_changes) over it."""
    import tempfile

    from sdctr.image import store as images

    image = images.resolve(paths, spec.image_id)
    upper, _ = layers(paths, spec)
    with tempfile.TemporaryFile(dir=paths.root) as f:
        write_layer(upper, f, mount_points(spec))
        f.seek(0)
        digest, _ = images.write_blob(paths, images.chunks_of(f))
    entrypoint = list(image.config.entrypoint)
    command = list(spec.command)
    config: dict[str, Any] = {
        "Entrypoint": entrypoint,
        "Cmd": command[len(entrypoint):] if command[:len(entrypoint)] == entrypoint else command,
        "Env": list(spec.env), "WorkingDir": spec.workdir, "User": spec.user,
        "ExposedPorts": {p: {} for p in image.config.exposed_ports},
        "Labels": {**image.config.labels, **spec.label_map},
    }
    config.update(changes)
    try:
        return images.create_image(paths, [*image.layer_blobs, digest], ref, changes=config,
                                   comment=comment, author=author,
                                   created_by=f"sdctr commit {spec.name}")
    except BaseException:
        images.discard_unused(paths, [digest])  # unless another image has this very layer
        raise
