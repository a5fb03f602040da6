"""Whether this machine can make a device-mapper thin pool: what `storage.driver: auto` asks, for
a new container (sdctr.storage.drivers) and for a declared one (sdctr.systemd.generator). Files
only, no process: it is on every create's path, and a generator runs before most of the system.

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


def usable() -> tuple[bool, str]:
    """(True, why) where a pool can be made here; else (False, what is missing), as `info` says."""
    mark = next((m for m in CONTAINER_MARKS if os.path.exists(m)), None)
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
