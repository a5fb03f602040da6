"""Which snapshotter: the one place a driver is picked by name (runc's manager/new.go habit).
Records carry their driver's name, so a host whose setting changes still runs and removes its
older containers."""

from __future__ import annotations

from sdctr.log import SdctrError
from sdctr.thinhost import FALLBACK, HOST_DEVICES

TYPE_CHECKING = False  # typing costs ~3 ms to import, and the start path needs none of it
if TYPE_CHECKING:
    from sdctr.paths import Paths
    from sdctr.storage.snapshotter import Snapshotter

DEFAULT = FALLBACK  # what a container gets where auto finds no thin pool to use (sdctr.thinhost)
LEGACY = "overlay"  # the driver of records made before the driver was recorded: the only one then
DRIVERS = ("overlay", "devicemapper")  # every driver, for what spans them all (image removal prunes each)


def driver(name: str, paths: Paths) -> Snapshotter:
    """The snapshotter called ``name``: the one place a driver is picked."""
    if name == "overlay":
        from sdctr.storage.overlay import OverlaySnapshotter

        return OverlaySnapshotter(paths)
    if name == "devicemapper":
        from sdctr.storage.devicemapper import DeviceMapperSnapshotter

        return DeviceMapperSnapshotter(paths)
    raise SdctrError(f"unknown storage driver {name!r}", hint=f"one of: {', '.join(DRIVERS)}")


def needs_host_devices(name: str) -> bool:
    return name in HOST_DEVICES


def status(name: str, paths: Paths) -> list[tuple[str, str | int]]:
    """The driver's `info` lines (Docker's DriverStatus): a thin pool's space, overlay's place."""
    if name == "devicemapper":
        from sdctr.storage.devicemapper import DeviceMapperSnapshotter

        return DeviceMapperSnapshotter(paths).status()
    if name == "overlay":
        import os

        from sdctr.storage.overlay import OverlaySnapshotter

        snap = OverlaySnapshotter(paths)
        rows: list[tuple[str, str | int]] = [("Layers Dir", str(snap.layers_dir))]
        try:  # the file system under the state root: what overlay's layers and containers share
            st = os.statvfs(paths.root)
        except FileNotFoundError:
            return rows
        return [*rows, ("Space Total", st.f_blocks * st.f_frsize),
                ("Space Available", st.f_bavail * st.f_frsize)]
    raise SdctrError(f"unknown storage driver {name!r}", hint=f"one of: {', '.join(DRIVERS)}")
