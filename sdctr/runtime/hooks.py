"""The unit's ExecStartPre and ExecStopPost: everything a container needs around its init.

    prestart  <id>   the rootfs snapshot prepared and activated at <run>/<id>/rootfs (for an
                     ephemeral container; others run the driver's activation command itself)
    stop      <id>   for units made before ExecStop became sdctr/stop.sh: that script
    netup     <id>   a bridge network's part (sdctr.net.setup.up): netns pinned, veth, address,
                     published ports
    declare   <name> a declared container's record made (or remade, its file changed) from
                     /etc/sdctr/containers/<name>.yaml, then prestart: the first ExecStartPre
                     of its generated unit ctr-<name>.service (sdctr.runtime.declared)
    netdown   <id>   its teardown, run first by ExecStopPost (needs no record: an id is enough)
    poststop  <id>   the exit status recorded (systemd hands it over in $EXIT_CODE/$EXIT_STATUS),
                     the rootfs unmounted, and for --rm the snapshot and record removed
    rootfs-up <id>   for a driver that needs the host's devices (devicemapper): prestart's work,
                     run by the container's own unit sdctr-rootfs@<id>.service, outside the
                     container's device cgroup (units/sdctr-rootfs@.service says why)
    rootfs-down <id> that unit's ExecStop, after the container's unit stopped: poststop's storage
                     work (its record and status were left to it) and the attached run's exit file

Both run on every start and stop, `systemctl restart ctr-<id>` included, so systemd alone can
restart a container. They must be idempotent: a hook killed halfway is simply run again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from sdctr import cgroups
from sdctr.log import debug
from sdctr.paths import Paths
from sdctr.state import find_by_id, read_status, remove_record, update_status, write_json_atomic
from sdctr.systemd.manager import UNIT_DIR

TYPE_CHECKING = False  # typing costs ~3 ms to import
if TYPE_CHECKING:
    from typing import Any

    from sdctr.spec import ContainerSpec
    from sdctr.storage.snapshotter import Snapshotter


def prestart(paths: Paths, cid: str) -> int:
    from sdctr.storage.snapshotter import activate

    spec = find_by_id(paths, cid)
    snap, layers = snapshotter_of(paths, spec), layers_of(paths, spec)
    if spec.ephemeral:
        snap.reset(cid)
    snap.prepare(cid, layers)
    activate(snap, cid, layers, paths.rootfs(cid))
    return 0


def rootfs_up(paths: Paths, cid: str) -> int:
    return prestart(paths, cid)


def rootfs_down(paths: Paths, cid: str) -> int:
    from sdctr.state import NoSuchContainer

    try:
        spec = find_by_id(paths, cid)
    except NoSuchContainer:  # `rm` removed it, its snapshot first
        return 0
    status = read_status(paths, cid)
    with contextlib.suppress(FileNotFoundError, ValueError):  # what poststop.sh recorded instead
        from sdctr.state import read_json

        status.update(read_json(paths.container_dir(cid) / EXIT_STATUS_FILE))
    if spec.remove:
        remove_container(paths, spec)
    else:
        snap = snapshotter_of(paths, spec)
        snap.deactivate(cid, paths.rootfs(cid))
        if spec.ephemeral:
            snap.reset(cid)
    if spec.attached:  # last: the attached run returns once nothing is left active
        write_json_atomic(exit_file(paths, cid), status)
    return 0


def netup(paths: Paths, cid: str) -> int:
    from sdctr.net import setup

    setup.up(paths, find_by_id(paths, cid))
    return 0


def netdown(paths: Paths, cid: str) -> int:
    from sdctr.net import setup

    for what in setup.down(paths, cid):
        debug(f"removed {what}")
    return 0


def snapshotter_of(paths: Paths, spec: ContainerSpec) -> Snapshotter:
    """The driver the record names (a record made before it was recorded: overlay, the only one
    then)."""
    from sdctr.storage.drivers import LEGACY, driver

    return driver(spec.storage or LEGACY, paths)


def has_snapshot(snap: Snapshotter, cid: str) -> bool:
    """Whether the container's snapshot exists: its directory, or a thin container's device as
    the driver's metadata names it (a JSON read, no dmsetup)."""
    snapshot = snap.snapshot_dir(cid)
    if snapshot is not None:
        return snapshot.is_dir()
    from sdctr.storage.devicemapper import DeviceMapperSnapshotter, container_name

    if not isinstance(snap, DeviceMapperSnapshotter):  # neither a directory nor devices: nothing to miss
        return True
    dev = snap.load(container_name(cid))
    return dev is not None and not dev.deleted


def rootfs_in_own_unit(spec: ContainerSpec) -> bool:
    """Whether the record's driver activates in sdctr-rootfs@<id>.service (rootfs-up/-down)."""
    from sdctr.storage.drivers import LEGACY, needs_host_devices

    return needs_host_devices(spec.storage or LEGACY)


ROOTFS_ENV = "rootfs.env"  # in the record's directory; units/sdctr-rootfs@.service names it
# in the record's directory: a thin --rm container's exit status as sdctr/poststop.sh records it
# (one line of JSON), for its rootfs unit to hand to the attached run (status.json's fields win
# nowhere else: the record goes with that unit's stop)
EXIT_STATUS_FILE = "exit.json"
_ENV_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 /._:,=+-@")


def write_rootfs_env(paths: Paths, spec: ContainerSpec) -> None:
    """What sdctr/rootfs.sh needs to activate and deactivate a thin container without Python,
    as the rootfs unit's EnvironmentFile; which of the two it may do itself (ROOTFS_FAST): all
    but an ephemeral container's reset. --rm's deletion (ROOTFS_REMOVE: the device's pool
    transaction, then the record) and an attached run's exit file (ROOTFS_EXIT) included.
    Rewritten at each start, so a `systemctl restart` without sdctr finds the last start's.
    Nothing is written where a value would need quoting beyond double quotes (the hooks serve).
    No SDCTR_* name: the hooks inherit these, and sdctr reads SDCTR_ROOT and SDCTR_CONFIG."""
    from sdctr.paths import ROOTFS_SCRIPT
    from sdctr.storage.devicemapper import DeviceMapperSnapshotter

    env_file = paths.container_dir(spec.id) / ROOTFS_ENV
    snap = snapshotter_of(paths, spec)
    fast = [] if spec.ephemeral else ["up", "down"]
    env = {"ROOTFS_SCRIPT": ROOTFS_SCRIPT, "ROOTFS_FAST": " ".join(fast)}
    if isinstance(snap, DeviceMapperSnapshotter) and fast:
        env.update(snap.activation_env(spec.id, layers_of(paths, spec), paths.rootfs(spec.id)))
        # as /proc/self/mountinfo shows them (the script's check for mounts under the run dir)
        env.update(ROOTFS_RECORD=os.path.realpath(paths.container_dir(spec.id)),
                   ROOTFS_RUN_DIR=os.path.realpath(paths.run_dir(spec.id)))
        if spec.remove:
            env.update(snap.removal_env(spec.id), ROOTFS_REMOVE="1",
                       ROOTFS_UNIT_FILE=str(UNIT_DIR / spec.unit))
        if spec.attached:
            env["ROOTFS_EXIT"] = str(exit_file(paths, spec.id))
        from sdctr.storage.mountinfo import ESCAPED

        if spec.remove and set(env["ROOTFS_RUN_DIR"]) & ESCAPED:  # the script's grep would miss them
            env["ROOTFS_FAST"] = "up"
    if not all(set(v) <= _ENV_SAFE for v in env.values()):
        env = {}
    tmp = env_file.with_name(f".{ROOTFS_ENV}.tmp{os.getpid()}")  # as state's temp files: swept
    tmp.write_text("".join(f'{k}="{v}"\n' for k, v in env.items()))
    os.replace(tmp, env_file)


def layers_of(paths: Paths, spec: ContainerSpec) -> tuple[str, ...]:
    """The layer chain the record names; a record made before it was recorded has its image
    resolved for it (the only path after create that reads the image store)."""
    if spec.storage:
        return spec.layers
    from sdctr.image import store as images

    return images.resolve(paths, spec.image_id).layers


def stop(paths: Paths, cid: str) -> int:
    """ExecStop of units made before it became a script: the script (sdctr/stop.sh)."""
    from sdctr.paths import STOP_SCRIPT

    os.execv("/bin/sh", ["/bin/sh", STOP_SCRIPT])


def poststop(paths: Paths, cid: str) -> int:
    env = os.environ
    spec = find_by_id(paths, cid)
    changes = dict(running=False, finished_at=time.time(), result=env.get("SERVICE_RESULT", ""),
                   exit_code=exit_code(env.get("EXIT_CODE", ""), env.get("EXIT_STATUS", "")),
                   oom_killed=env.get("SERVICE_RESULT") == "oom-kill" or cgroups.oom_killed_here())
    if rootfs_in_own_unit(spec):  # storage, --rm's removal, exit file: its rootfs unit's, stopped next
        tear_down(paths, spec, changes, storage=False)
        if spec.network_container and not spec.remove:
            follow_target(paths, spec)
        return 0
    status = tear_down(paths, spec, changes)
    if spec.network_container and not spec.remove:
        follow_target(paths, spec)
    # last, as poststop.sh does: the attached `sdctr run` that waits for this file (and removes
    # it) returns once everything else is done; a --rm container's is kept a while for a `wait`
    # that comes after the record is gone (state.EXIT_KEPT)
    if spec.attached or spec.remove:
        write_json_atomic(exit_file(paths, cid), status)
    return 0


def follow_target(paths: Paths, spec: ContainerSpec) -> None:
    """--network container:NAME, this container taken down with NAME (systemd's BindsTo=) while
    NAME is to come back by its own --restart: marked to start again with it, as Upholds= would
    have it (NAME's network hook starts the marked: sdctr.net.joined.start_followers), or started
    once this stop is over where NAME is back already. Stopped by hand, or while NAME runs on in
    the namespace it had (a stop of its own), or with NAME stopped by hand, it stays stopped."""
    from sdctr.spec import RestartPolicy
    from sdctr.state import NoSuchContainer

    try:
        target = find_by_id(paths, spec.network_container)
    except NoSuchContainer:
        return
    own, theirs = read_status(paths, spec.id), read_status(paths, target.id)
    if target.restart is RestartPolicy.NO or own.get("stopped_by_user") or theirs.get("stopped_by_user"):
        return
    from sdctr.net import joined
    from sdctr.systemd.manager import Systemd

    state = Systemd().active_state(target.unit)
    if state == "active" and (theirs.get("started_at") or 0) <= (own.get("started_at") or 0):
        return
    if state == "active":  # NAME's restart ended before this stop did: its hook has looked already
        joined.start_after(paths, spec.unit, [spec.id])  # (after this stop)
        return
    with contextlib.suppress(FileNotFoundError):  # (NAME's record removed meanwhile: nothing to follow)
        paths.followers(target.id).mkdir(mode=0o700, exist_ok=True)
        (paths.followers(target.id) / spec.id).touch()


def tear_down(paths: Paths, spec: ContainerSpec, changes: dict[str, Any], *,
              storage: bool = True) -> dict[str, Any]:
    """The poststop hook's work once the exit is known (`changes` to the status): the rootfs
    unmounted and the status written, or, for --rm, everything removed. The status as left.
    `storage` False: the status alone, the rest being a rootfs unit's (rootfs_down) that has not
    stopped yet. Idempotent: run again by the next command that finds it cut short
    (lifecycle.finish_stop)."""
    status = {**read_status(paths, spec.id), **changes}
    if not storage:
        return update_status(paths, spec.id, **changes) or status
    if spec.remove:
        remove_container(paths, spec)  # unmounts first
    else:
        snap = snapshotter_of(paths, spec)
        snap.deactivate(spec.id, paths.rootfs(spec.id))
        status = update_status(paths, spec.id, **changes) or status  # (None: `rm` removed it meanwhile)
        if spec.ephemeral:
            snap.reset(spec.id)
    return status


def poststop_command(paths: Paths, spec: ContainerSpec) -> list[str] | None:
    """poststop() for a --rm container as a shell script the unit runs without Python (see
    poststop.sh), the hook's own argv to be appended for the cases it hands over; None where the
    script cannot do the hook's work (a kept record, a snapshot that is more than a directory)."""
    from sdctr.storage import mountinfo

    if spec.remove and rootfs_in_own_unit(spec):
        # the storage, the record and the attached run's exit file are the rootfs unit's (stopped
        # next): the script records the exit status for it, in the record (no snapshot given)
        from sdctr.paths import POSTSTOP_SCRIPT

        return ["/bin/sh", POSTSTOP_SCRIPT, os.path.realpath(paths.rootfs(spec.id)), "", "", "", "",
                os.path.realpath(paths.container_dir(spec.id))]
    snapshot = snapshotter_of(paths, spec).snapshot_dir(spec.id) if spec.remove else None
    if snapshot is None:
        return None
    # as /proc/self/mountinfo shows them, so that the script's check for mounts matches
    args = [os.path.realpath(p) for p in (paths.rootfs(spec.id), snapshot, paths.run_dir(spec.id),
                                          UNIT_DIR / spec.unit, paths.container_dir(spec.id))]
    if any(set(a) & mountinfo.ESCAPED for a in args):  # the script's grep would miss them
        return None
    exit_to = str(exit_file(paths, spec.id))  # --rm: for the attached run, or a late `wait`
    from sdctr.paths import POSTSTOP_SCRIPT as script
    return ["/bin/sh", script, args[0], exit_to, *args[1:]]


def remove_container(paths: Paths, spec: ContainerSpec) -> None:
    """Snapshot, runtime directory and record; the record last, so a crash leaves it findable."""
    import shutil

    from sdctr.storage.mountinfo import mounts_under

    snap = snapshotter_of(paths, spec)
    snap.deactivate(spec.id, paths.rootfs(spec.id))
    snap.remove(spec.id)
    # a unit file written for an old systemd goes too; it stays loaded until systemd's next
    # reload, inactive, and is collected then
    with contextlib.suppress(FileNotFoundError):
        (UNIT_DIR / spec.unit).unlink()
    with contextlib.suppress(FileNotFoundError):  # what the attached run had not read: nobody will
        exit_file(paths, spec.id).unlink()
    run_dir = paths.run_dir(spec.id)
    if run_dir.exists():
        shutil.rmtree(run_dir) if not mounts_under(run_dir) else debug(f"{run_dir} busy, kept")
    remove_record(paths, spec.id)


def exit_file(paths: Paths, cid: str) -> Path:
    from sdctr.state import EXIT_SUFFIX

    return paths.run / f"{cid}{EXIT_SUFFIX}"


def exit_code(code: str, status: str) -> int | None:
    """systemd's $EXIT_CODE/$EXIT_STATUS as a shell would report them: 128+N for signal N."""
    if code == "exited":
        return int(status) if status.isdigit() else None
    if code in ("killed", "dumped"):
        try:
            return 128 + int(signal.Signals[f"SIG{status}"])
        except KeyError:
            return 128 + int(status) if status.isdigit() else None
    return None


