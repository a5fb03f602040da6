"""A declared container's record, made when its unit starts (`sdctr hook declare NAME`, the
unit's first ExecStartPre; see sdctr.systemd.generator for why not at generation time).

The record is kept while its file is unchanged: the file's digest is stored beside it, and a
changed file (or `pull: always`) remakes the record and its writable snapshot, as Docker
Compose recreates a service whose configuration changed. The unit is stopped whenever this
runs, so the old snapshot is unmounted (its poststop ran).
"""

from __future__ import annotations

import hashlib
import os

from sdctr.log import SdctrError, debug
from sdctr.options import declared_dir, read_declared, user_env
from sdctr.paths import Paths
from sdctr.state import NoSuchContainer, find_by_id
from sdctr.systemd.generator import declared_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdctr.image.store import Image

STAMP = "declared.sha256"  # beside config.json: the digest of the file it was made from


def hook(paths: Paths, name: str) -> int:
    """`sdctr hook declare NAME`: the record, then the transient path's prestart. This runs in
    the container's own unit, whose device cgroup a thin pool's messages would not pass: the
    generator made it for a driver without host devices, and the record is made on such a one."""
    from sdctr.runtime import hooks
    from sdctr.state import find_by_id

    cid = declare(paths, name, thin=False)
    if hooks.rootfs_in_own_unit(find_by_id(paths, cid)):  # its unit generated while /var was away
        raise SdctrError(f"declared container {name} is on devicemapper, but its unit was generated "
                         "without its rootfs unit (sdctr-rootfs@.service)",
                         hint=f"systemctl daemon-reload, then systemctl start ctr-{name}")
    return hooks.prestart(paths, cid)


def rootfs_hook(paths: Paths, name: str) -> int:
    """`sdctr hook declare-rootfs NAME`: a declared thin container's rootfs unit's ExecStartPre
    (the generator's drop-in): the record, made on devicemapper as the generator made its unit
    for, and rootfs.env, which that unit's ExecStart (sdctr/rootfs.sh) then activates."""
    from sdctr.runtime import hooks
    from sdctr.state import find_by_id

    hooks.write_rootfs_env(paths, find_by_id(paths, declare(paths, name, thin=True)))
    return 0


def declare(paths: Paths, name: str, *, thin: bool = False) -> str:
    """The record of the container declared as `name`, made or remade as its file says; its id.
    `thin`: on the devicemapper driver (its unit has a rootfs unit), else on storage.driver's
    choice unless that is one with host devices, which its unit could not activate."""
    from sdctr.runtime import hooks

    path = os.path.join(declared_dir(), f"{name}.yaml")
    options = read_declared(path)  # first: a broken file fails the start with its error
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    cid = declared_id(name)
    try:
        current = find_by_id(paths, cid)
    except NoSuchContainer:
        current = None
    stamp = paths.container_dir(cid) / STAMP
    if current is not None and options.pull != "always" and _read(stamp) == digest:
        return cid
    paths.make_private()
    image = _image(paths, options.image, options.pull, options.platform)
    from sdctr.runtime.lifecycle import create
    from sdctr.runtime.resolve import resolve

    spec = resolve(options, image, user_env=user_env(options, os.environ)).replace(
        id=cid, declared=True, storage=_storage(paths, thin))
    if current is not None:
        debug(f"{path} changed: remaking container {name}")
        hooks.remove_container(paths, current)
    spec = create(paths, spec, image, starting=True)
    stamp.write_text(digest + "\n")
    return cid


def _storage(paths: Paths, thin: bool) -> str:
    """The driver of a new record: the one its unit was generated for (sdctr.systemd.generator's
    storage_of decides from files; here storage.driver "auto" may find dm-thin loaded since)."""
    from sdctr.storage import drivers
    from sdctr.thinhost import chosen_driver

    if thin:
        return "devicemapper"
    chosen = chosen_driver(paths.root)[0]
    if drivers.needs_host_devices(chosen):
        debug(f"storage.driver picks {chosen}, but this unit was made before: overlay "
              "(`systemctl daemon-reload` remakes the unit)")
        return drivers.DEFAULT
    return chosen


def _image(paths: Paths, ref: str, pull: str, platform: str | None) -> Image:
    from sdctr.image import store as images

    if pull != "always":
        try:
            return images.resolve(paths, ref)
        except images.NoSuchImage:
            if pull == "never":
                raise
    from sdctr.image import registry

    return registry.pull(paths, ref, platform=platform)


def _read(path: os.PathLike[str]) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""
