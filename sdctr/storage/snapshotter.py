"""The snapshotter interface: a writable root file system per container over an image's layers.

After containerd's snapshotters (snapshots/snapshotter.go): a driver *describes* what to mount
and the caller mounts it, so the same description serves the unit's ExecStartPre (a shell
command that runs without Python), the hooks and export. A container's snapshot is named by its
id and built on its layer chain (diff ids, bottom first), both recorded with the container at
create time: nothing after create needs the image store or the configuration.

    unpack(image)                    every layer of the image, once (idempotent; racing callers
                                     both unpack, one copy wins); the unpacked sizes
    prepare(cid, layers)             the container's writable snapshot (idempotent)
    rootfs(cid, layers, target)      the Mount that shows it at target, once active
    activate_command(cid, layers, target)
                                     ExecStartPre's argv: whatever makes the snapshot mountable,
                                     then the mount; a mount already there is kept (restarts)
    view(cid, layers, target)        a read-only Mount of the container's files (export)
    deactivate(cid, target)          unmounted, and released where the driver holds more
    reset(cid)                       the writable layer emptied (--ephemeral)
    remove(cid)                      the snapshot deleted; refused while anything mounts it
    prune(keep)                      unpacked layers outside ``keep`` and unused, deleted
    snapshot_dir(cid)                the one directory whose deletion removes the snapshot once it
                                     is deactivated (poststop.sh's rm), or None

Drivers are picked in one place, :func:`driver`: "overlay", and "devicemapper" (a thin pool:
``dmsetup create`` + ``mount`` to activate). Overlay's activation is the container unit's
ExecStartPre; devicemapper's needs the host's devices (/dev/mapper/control), which the container
unit's device cgroup closes, so it runs in a unit of its own, sdctr-rootfs@<id>.service
(thinhost.HOST_DEVICES names such drivers; units/sdctr-rootfs@.service says why).

This package knows images only through the LayeredImage protocol and imports nothing upstream
of it (DESIGN.md: data flows one way).
"""

from __future__ import annotations

from pathlib import Path

from sdctr.log import SdctrError, debug
from sdctr.record import Record
from sdctr.storage.mountinfo import MountInfo, mounts_at

TYPE_CHECKING = False  # typing costs ~3 ms to import, and the start path needs none of it
if TYPE_CHECKING:  # the interface, for the type checker (drivers need no base class)
    from collections.abc import Collection
    from typing import Protocol

    class LayeredImage(Protocol):
        """What a snapshotter needs of an image (sdctr.image.store.Image satisfies it)."""

        @property
        def name(self) -> str: ...
        @property
        def layers(self) -> tuple[str, ...]: ...  # diff ids, bottom first
        @property
        def layer_blobs(self) -> tuple[str, ...]: ...  # blob digests, same order

    class Snapshotter(Protocol):
        name: str  # as a container's record and sdctr.yaml spell it

        def unpack(self, image: LayeredImage) -> dict[str, int]: ...
        def prepare(self, cid: str, layers: tuple[str, ...]) -> None: ...
        def rootfs(self, cid: str, layers: tuple[str, ...], target: Path) -> Mount: ...
        def activate_command(self, cid: str, layers: tuple[str, ...], target: Path) -> list[str]: ...
        def view(self, cid: str, layers: tuple[str, ...], target: Path) -> Mount: ...
        def deactivate(self, cid: str, target: Path) -> None: ...
        def release(self, cid: str) -> None: ...  # what view() activated, its mount gone
        def reset(self, cid: str) -> None: ...
        def remove(self, cid: str) -> None: ...
        def prune(self, keep: Collection[str]) -> list[str]: ...
        def snapshot_dir(self, cid: str) -> Path | None: ...
        def setup(self) -> list[str]: ...  # what a boot's first container needs; what it made


class Mount(Record):
    """One mount, described: what mount(8) takes (containerd's mount.Mount, with its target)."""

    type: str
    source: str
    target: Path
    options: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        return ["mount", "-t", self.type, *(["-o", ",".join(self.options)] if self.options else []),
                self.source, str(self.target)]

    def command(self) -> list[str]:
        """argv() as the unit runs it: the target made, a mount already there kept (a restart
        after a crash runs it over one). `[` is a builtin: no process once the directory exists
        (made at create time; a reboot empties /run)."""
        script = '{ [ -d "$1" ] || mkdir -p "$1"; } && { mountpoint -q "$1" || { shift; exec "$@"; }; }'
        return ["/bin/sh", "-c", script, "sh", str(self.target), *self.argv()]

    def shown_by(self, info: MountInfo) -> bool:
        """Whether mountinfo's entry is this mount: type and source, and every key=value option
        (overlay's lowerdir/upperdir/workdir say which snapshot it is)."""
        shown = set(info.options.split(","))
        return (info.fstype == self.type and info.source == self.source
                and all(o in shown for o in self.options if "=" in o))


def mount(m: Mount) -> None:
    """Mounts ``m``; a no-op when it is mounted there already, refused over anyone else's mount."""
    from sdctr.external import run

    if _already(m):
        return
    m.target.mkdir(parents=True, exist_ok=True)
    run(m.argv())


def activate(snap: Snapshotter, cid: str, layers: tuple[str, ...], target: Path) -> None:
    """What the unit's ExecStartPre does, from Python (the hook's path), with mount()'s check."""
    from sdctr.external import run

    if not _already(snap.rootfs(cid, layers, target)):
        run(snap.activate_command(cid, layers, target))


def _already(m: Mount) -> bool:
    here = mounts_at(m.target)
    if not here:
        return False
    top = here[-1]
    if m.shown_by(top):
        return True
    raise SdctrError(f"{m.target} already has a {top.fstype} mount from {top.source}",
                     hint=f"unmount it first: umount {m.target}")


def unmount(target: Path) -> None:
    """Unmounts everything stacked at ``target``; lazily only when the kernel says busy, because
    a lazy unmount hides a leak instead of reporting it."""
    from sdctr.external import run

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
