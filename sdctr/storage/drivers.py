"""Which snapshotter: the one place a driver is picked by name (runc's manager/new.go habit).
Records carry their driver's name, so a host whose setting changes still runs and removes its
older containers."""

from __future__ import annotations

from sdctr.log import SdctrError

TYPE_CHECKING = False  # typing costs ~3 ms to import, and the start path needs none of it
if TYPE_CHECKING:
    from sdctr.paths import Paths
    from sdctr.storage.snapshotter import Snapshotter

DEFAULT = "overlay"  # what a container gets while sdctr.yaml names no driver
LEGACY = "overlay"  # the driver of records made before the driver was recorded: the only one then
DRIVERS = ("overlay",)  # every driver, for what spans them all (image removal prunes each)


def driver(name: str, paths: Paths) -> Snapshotter:
    """The snapshotter called ``name``: the one place a driver is picked."""
    if name == "overlay":
        from sdctr.storage.overlay import OverlaySnapshotter

        return OverlaySnapshotter(paths)
    raise SdctrError(f"unknown storage driver {name!r}", hint=f"one of: {', '.join(DRIVERS)}")
