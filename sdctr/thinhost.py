"""Whether this machine can make a device-mapper thin pool, and so the driver `storage.driver:
auto` picks (chosen_driver): for a new container (sdctr.runtime), for `info`, and for a declared
one (sdctr.systemd.generator). Files only, no process: it is on every create's path, and a
generator runs before most of the system.

The kernel's dm-thin is not enough. Device-mapper is not namespaced: in a container on such a
kernel (a test host, a Docker or podman container, even one given the host's /dev) a pool would be
the host kernel's, named and holding loop devices beside the host's own, outliving the container;
the VM tier's test host tried, and its mounts failed."""

from __future__ import annotations

import os

# Drivers whose activation opens the host's devices (/dev/mapper/control, the pool): it cannot run
# in the container's unit, whose device cgroup is closed, so it runs in a unit of its own. Here, not
# in sdctr.storage.drivers, so that the generator (downstream of storage) can ask it too.
HOST_DEVICES = ("devicemapper",)
# systemd writes the first in a container (nspawn, a test host: PID 1's $container); podman and
# Docker leave the others
CONTAINER_MARKS = ("/run/systemd/container", "/run/.containerenv", "/.dockerenv")
THIN_MODULE = "/sys/module/dm_thin_pool"  # it has parameters: there when loaded or built in
MAPPER_CONTROL = "/dev/mapper/control"
LOOP_CONTROL = "/dev/loop-control"
TOOL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
FALLBACK = "overlay"  # what a new container gets where auto finds no pool to use
# what sdctr-thinpool.service's conditions look for: a pool sdctr made here (its loop files, or
# the record of the pool it took, loop or LVM), relative to the state root
POOL_MARKS = ("devicemapper/pool/data", "devicemapper/pool.json")


def chosen_driver(root: str | os.PathLike[str]) -> tuple[str, str]:
    """The driver a new container gets on the host whose state root is `root`, and why (as `info`
    says it): sdctr.yaml's storage.driver; for "auto" (the default), devicemapper where a pool can
    be made here (usable()), overlay elsewhere, but devicemapper still where sdctr made a pool
    before (POOL_MARKS) and usable() now says no, unless that is because this is a container.

    Why the pool wins: what usable() misses then can come and go (a generator may run before
    kmod-static-nodes made /dev/mapper/control; a kernel update without the module; dmsetup
    removed), while the host's images and containers stay on that pool. Overlay for new
    containers would hide the fault and split the host in two (a declared container's unit on
    one driver, `run` on the other); Docker keeps its "prior storage driver" likewise. What is
    missing is in `why`, which `info` shows. Never in a container: a pool made there is the host
    kernel's, the mistake usable() exists to refuse. Raises SdctrError for an unreadable
    sdctr.yaml (the generator, which must not fail, takes overlay then)."""
    from sdctr.config import load

    chosen = load().storage.driver
    if chosen != "auto":
        return chosen, "storage.driver in sdctr.yaml"
    ok, why = usable()
    if ok:
        return "devicemapper", f"auto: {why}"
    pool = next((p for p in (os.path.join(root, m) for m in POOL_MARKS) if os.path.exists(p)), None)
    if pool is not None and container_mark() is None:
        return "devicemapper", f"auto: sdctr made a thin pool here ({pool}), kept though {why}"
    return FALLBACK, f"auto: {why}"


def container_mark() -> str | None:
    """The file that says this is a container (CONTAINER_MARKS), if any."""
    return next((m for m in CONTAINER_MARKS if os.path.exists(m)), None)


def usable() -> tuple[bool, str]:
    """(True, why) where a pool can be made here; else (False, what is missing), as `info` says."""
    mark = container_mark()
    if mark is not None:
        return False, (f"this is a container ({mark}): device-mapper is the host kernel's, "
                       "not the container's")
    if not (os.path.exists(THIN_MODULE) or module_installed()):
        return False, "the kernel has no dm-thin (no dm_thin_pool module, loaded or installed)"
    for dev, what in ((MAPPER_CONTROL, "device-mapper"), (LOOP_CONTROL, "loop devices")):
        try:
            os.close(os.open(dev, os.O_RDWR | os.O_CLOEXEC))
        except OSError as e:
            return False, f"the kernel has dm-thin, but {dev} cannot be opened ({e.strerror}): no {what}"
    import shutil

    if shutil.which("dmsetup", path=TOOL_PATH) is None:
        return False, "the kernel has dm-thin, but dmsetup is not installed (package device-mapper)"
    return True, "the kernel has dm-thin, and device-mapper, loop devices and dmsetup are at hand"


def module_installed() -> bool:
    """dm-thin-pool as a module not loaded yet (device-mapper loads it at the pool's first table)."""
    import glob

    return bool(glob.glob(f"/lib/modules/{os.uname().release}/kernel/drivers/md/dm-thin-pool.ko*"))
