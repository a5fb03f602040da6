"""`sdctr system check [--repair]` (as `podman system check`): walks records, units, mounts,
snapshots and the image store for what DESIGN.md's invariants forbid, one line each; with
--repair, fixes what it can without losing data (nothing a user made is deleted: a record
whose image is gone is reported, not removed)."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.spec import ContainerSpec

_CID = re.compile(r"[0-9a-f]{64}")
Repair = Callable[[], object]


class Problem:
    def __init__(self, what: str, repair: Repair | None = None):
        self.what, self.repair = what, repair


def cmd_system_check(args: argparse.Namespace) -> int:
    from sdctr.cli.containers import paths_of, systemd_of

    paths = paths_of(args)
    sd, _ = systemd_of(args)
    found = repaired = 0
    for problem in inconsistencies(paths, sd):
        found += 1
        note = ""
        if args.repair:
            if problem.repair is None:
                note = " (not repaired: needs a decision of yours)"
            else:
                try:
                    problem.repair()
                    note, repaired = " (repaired)", repaired + 1
                except (OSError, SdctrError) as e:
                    note = f" (not repaired: {e})"
        print(f"{problem.what}{note}")
    print(f"{found} inconsistencies found" + (f", {repaired} repaired" if args.repair else ""))
    return 0 if found == repaired else 1


def inconsistencies(paths: Paths, sd: Any) -> Iterator[Problem]:
    from sdctr.runtime.lifecycle import RUNNING_STATES
    from sdctr.state import all_specs

    specs = all_specs(paths)  # sweeps half-made records, dead writers' temps, unread exit files
    by_id = {s.id: s for s in specs}
    states = sd.active_states()
    running = {s.id for s in specs if states.get(s.unit) in RUNNING_STATES}
    for spec in specs:
        yield from _record(paths, sd, spec, states.get(spec.unit), spec.id in running)
    units = {s.unit for s in specs}
    for unit, active in states.items():
        if unit not in units:
            yield Problem(f"unit {unit} ({active}) has no record", functools.partial(_drop_unit, sd, unit))
    yield from _mounts(paths, running)
    yield from _leftovers(paths, set(by_id))
    if (paths.root / "devicemapper" / "metadata").is_dir():
        yield from _thin_leftovers(paths, set(by_id))
    yield from _store(paths, specs)


def _record(paths: Paths, sd: Any, spec: ContainerSpec, active: str | None,
            running: bool) -> Iterator[Problem]:
    from sdctr.runtime import hooks
    from sdctr.state import read_status, update_status
    from sdctr.storage.mountinfo import mounts_at

    name = f"container {spec.name} ({spec.short_id})"
    snap = hooks.snapshotter_of(paths, spec)
    if not hooks.has_snapshot(snap, spec.id):
        yield Problem(f"{name}: its snapshot is missing",
                      lambda: snap.prepare(spec.id, hooks.layers_of(paths, spec)))
    if active == "failed":
        yield Problem(f"{name}: its unit {spec.unit} failed", lambda: sd.reset_failed(spec.unit))
    if not running:
        rootfs = paths.rootfs(spec.id)
        if mounts_at(rootfs):
            yield Problem(f"{name}: not running, its rootfs is mounted at {rootfs}",
                          lambda: snap.deactivate(spec.id, rootfs))
        else:
            from sdctr.runtime.lifecycle import rootfs_left

            if rootfs_left(paths, spec):  # a thin device its rootfs unit left active
                yield Problem(f"{name}: not running, its thin device is active",
                              lambda: snap.deactivate(spec.id, rootfs))
        if read_status(paths, spec.id).get("running"):
            yield Problem(f"{name}: recorded as running, its unit is {active or 'gone'}",
                          lambda: update_status(paths, spec.id, running=False, finished_at=time.time()))


def _thin_leftovers(paths: Paths, records: set[str]) -> Iterator[Problem]:
    """Thin devices of containers that have no record (their metadata, not the pool: reading
    it needs no dmsetup)."""
    from sdctr.storage.devicemapper import DeviceMapperSnapshotter

    snap = DeviceMapperSnapshotter(paths)
    for dev in snap.devices():
        cid = dev.name[len("ctr-"):]
        if dev.name.startswith("ctr-") and _CID.fullmatch(cid) and cid not in records:
            yield Problem(f"devicemapper device {dev.name[:16]} has no record",
                          functools.partial(snap.remove, cid))


def _drop_unit(sd: Any, unit: str) -> None:
    with contextlib.suppress(SdctrError):
        sd.kill(unit, 9, who="main")
    with contextlib.suppress(SdctrError):
        sd.stop(unit)
    sd.reset_failed(unit)
    sd.remove_unit_file(unit)


def _mounts(paths: Paths, running: set[str]) -> Iterator[Problem]:
    from sdctr.storage.mountinfo import mounts_under
    from sdctr.storage.snapshotter import unmount

    for top in dict.fromkeys((paths.run, paths.root)):
        real = os.path.realpath(top)
        for m in mounts_under(top):
            # the state directory may itself be a mount (a disk of its own): only what is below
            # it, and names a container, is a container's
            below = str(m.target)[len(real) + 1:].split("/")
            if str(m.target) == real or any(p in running for p in below):
                continue
            if any(_CID.fullmatch(p) for p in below):
                yield Problem(f"mount {m.target} ({m.fstype}) has no running container",
                              functools.partial(unmount, Path(m.target)))


def _leftovers(paths: Paths, records: set[str]) -> Iterator[Problem]:
    from sdctr.storage import drivers
    from sdctr.storage.mountinfo import mounts_under

    for name in drivers.DRIVERS:
        snap = drivers.driver(name, paths)
        probe = snap.snapshot_dir("0" * 64)
        if probe is None or not probe.parent.is_dir():
            continue
        for d in probe.parent.iterdir():
            if _CID.fullmatch(d.name) and d.name not in records:
                yield Problem(f"{name} snapshot {d.name[:12]} has no record",
                              functools.partial(snap.remove, d.name))
    for d in paths.run.iterdir() if paths.run.is_dir() else ():
        if _CID.fullmatch(d.name) and d.name not in records and d.is_dir():
            def remove(d: Path = d) -> None:
                if mounts_under(d):
                    raise SdctrError(f"{d} has mounts")
                shutil.rmtree(d)
            yield Problem(f"runtime directory {d} has no record", remove)


def _store(paths: Paths, specs: list[ContainerSpec]) -> Iterator[Problem]:
    from sdctr.image import store as images

    blobs = paths.root / "blobs" / "sha256"
    for tmp in blobs.glob(".tmp-*") if blobs.is_dir() else ():
        if not _locked(tmp):
            yield Problem(f"temporary blob {tmp.name} of a dead writer",
                          lambda: images.sweep_dead_temps(paths))
    from sdctr.storage.overlay import OverlaySnapshotter

    overlay = OverlaySnapshotter(paths)
    for tmp in overlay.layers_dir.glob(".tmp-*") if overlay.layers_dir.is_dir() else ():
        if not _locked(tmp):
            yield Problem(f"unpack directory {tmp.name} of a dead writer", overlay.sweep_dead_unpacks)
    from sdctr.image import archive

    for tmp in archive.old_save_temps(paths):
        yield Problem(f"temporary file {tmp} of a killed save",
                      functools.partial(archive.sweep_old_save_temps, paths))
    known = {i.id for i in images.list_images(paths)}
    for spec in specs:
        if spec.image_id not in known:
            yield Problem(f"container {spec.name} ({spec.short_id}): its image {spec.image} is gone")
    orphans = images.unreferenced_blobs(paths)
    if orphans:
        yield Problem(f"{len(orphans)} blob(s) no image references ({sum(n for _, n in orphans)} bytes)",
                      lambda: images.collect_garbage(paths))


def _locked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)
