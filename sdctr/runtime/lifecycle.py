"""A container's lifecycle over its unit: create, start, attach, stop, kill, remove, describe.

The record (state) says what the container is; systemd says whether it runs. Every verb reads
both by id and changes the unit through `sdctr.systemd` only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.runtime import hooks
from sdctr.spec import ContainerSpec
from sdctr.state import all_specs, read_status, save_spec
from sdctr.systemd.manager import Systemd
from sdctr.systemd.properties import Host, properties, sdctr_argv

TYPE_CHECKING = False  # typing costs ~3 ms to import, and run needs none of it
if TYPE_CHECKING:
    from typing import Any

    from sdctr.image.store import Image

RUNNING_STATES = ("active", "activating", "deactivating", "reloading")


def new_id() -> str:
    # what secrets.token_hex(32) returns, without its import (hmac, hashlib: ~3 ms of every run)
    return os.urandom(32).hex()


def root_args(paths: Paths) -> list[str]:
    return [] if paths.is_default else ["--root", str(paths.root)]


def unit_props(paths: Paths, spec: ContainerSpec, host: Host,
               stdio: tuple[int, int, int] | None = None) -> list[Any]:
    return properties(spec, host, sdctr_argv(root_args(paths)), stdio,
                      prestart=prestart_command(paths, spec),
                      poststop=hooks.poststop_command(paths, spec))


def prestart_command(paths: Paths, spec: ContainerSpec) -> list[str] | None:
    """The snapshot was prepared at create time, so activating it is the driver's command, which
    the unit runs without a Python process of its own (a hundred milliseconds of every start).
    An ephemeral container's writable layer is reset first: that stays with the hook."""
    if spec.ephemeral:
        return None
    snap = hooks.snapshotter_of(paths, spec)
    return snap.activate_command(spec.id, hooks.layers_of(paths, spec), paths.rootfs(spec.id))


def create(paths: Paths, spec: ContainerSpec, image: Image) -> ContainerSpec:
    """The record and the writable snapshot; nothing runs yet (`docker create`). The record names
    the storage driver and the layer chain, so starting it never needs the image store or the
    configuration again. The spec as saved: named, if it had no name."""
    from sdctr.storage import drivers

    spec = spec.replace(storage=spec.storage or drivers.default_driver()[0], layers=image.layers)
    snap = drivers.driver(spec.storage, paths)
    unpacked = snap.unpack(image)
    if unpacked:  # the first container of a pulled image: now its SIZE is known
        from sdctr.image import store as images

        images.record_unpacked(paths, unpacked)
    spec = save_spec(paths, spec)
    try:
        snap.prepare(spec.id, spec.layers)
        paths.rootfs(spec.id).mkdir(parents=True, exist_ok=True)  # the unit's mount point
    except BaseException:
        hooks.remove_container(paths, spec)
        raise
    return spec


def start(paths: Paths, spec: ContainerSpec, sd: Systemd, host: Host, *,
          stdio: tuple[int, int, int] | None = None) -> None:
    sd.start_transient(spec.unit, unit_props(paths, spec, host, stdio), host)


def run(paths: Paths, spec: ContainerSpec, image: Image, sd: Systemd, host: Host, *,
        stdio: tuple[int, int, int] | None = None) -> ContainerSpec:
    """create + start; on a failed start nothing is left: no record, snapshot or unit. The spec
    as saved."""
    spec = create(paths, spec, image)
    try:
        start(paths, spec, sd, host, stdio=stdio)
    except BaseException as e:
        with contextlib.suppress(Exception):  # interrupted while it runs: it must not outlive us
            sd.kill(spec.unit, signal.SIGKILL, who="all")
        sd.settle(spec.unit)  # a failed start job ends before ExecStopPost has run
        sd.reset_failed(spec.unit)
        with contextlib.suppress(SdctrError):
            sd.remove_unit_file(spec.unit)
        hooks.remove_container(paths, spec)
        code = _take_exit_file(paths, spec)
        if isinstance(e, SdctrError) and code in (126, 127):
            # a --rm unit is collected at once; its poststop hook kept the init's status for us
            raise SdctrError(str(e), e.hint, status=code) from e
        raise
    return spec


def _take_exit_file(paths: Paths, spec: ContainerSpec) -> int | None:
    """The exit status the poststop hook left for an attached run (None while it has not)."""
    path = hooks.exit_file(paths, spec.id)
    try:
        status = json.loads(path.read_text())
        path.unlink()
        return _status_code(status)
    except (FileNotFoundError, ValueError):
        return None


def wait_exit(paths: Paths, spec: ContainerSpec, sd: Systemd, *, attached: bool = True,
              poll: float = 0.002) -> int:
    """Until the unit has stopped and its poststop hook has recorded the exit; the status.

    The attached run watches for the exit file its poststop hook leaves for it (a stat, cheap
    to poll) and asks systemd only once a second, in case the hook never ran; anyone else
    (`wait`) asks systemd every `poll` seconds and reads the record."""
    ask_every = 1.0 if attached else poll
    next_ask = time.monotonic() + ask_every
    while True:
        code = _take_exit_file(paths, spec) if attached else None
        if code is not None:
            return code
        if time.monotonic() >= next_ask:
            next_ask = time.monotonic() + ask_every
            if sd.active_state(spec.unit) not in RUNNING_STATES:
                time.sleep(0.2 if attached else 0)  # the file may be a moment behind
                code = _take_exit_file(paths, spec) if attached else None
                return code if code is not None else _status_code(read_status(paths, spec.id))
        time.sleep(poll)


def _status_code(status: dict[str, Any]) -> int:
    code = status.get("exit_code")
    return int(code) if code is not None else 125


def is_running(sd: Systemd, spec: ContainerSpec) -> bool:
    return sd.active_state(spec.unit) in RUNNING_STATES


def stop(sd: Systemd, spec: ContainerSpec, timeout: float | None) -> None:
    if is_running(sd, spec):
        sd.stop(spec.unit, timeout)


def kill(sd: Systemd, spec: ContainerSpec, signum: int) -> None:
    if not is_running(sd, spec):
        raise SdctrError(f"container {spec.name} is not running")
    sd.kill(spec.unit, signum)


def remove(paths: Paths, sd: Systemd, spec: ContainerSpec, force: bool) -> None:
    if is_running(sd, spec):
        if not force:
            raise SdctrError(f"you cannot remove a running container {spec.short_id}",
                             hint="stop it first, or remove it with 'rm -f'")
        sd.kill(spec.unit, signal.SIGKILL, who="all")
        sd.stop(spec.unit)
    sd.reset_failed(spec.unit)
    sd.remove_unit_file(spec.unit)
    hooks.remove_container(paths, spec)


# --- describing containers ----------------------------------------------------------------------

def describe(paths: Paths, spec: ContainerSpec, unit: dict[str, Any]) -> dict[str, Any]:
    """`inspect`'s document: Docker's field names where Docker has one."""
    status = read_status(paths, spec.id)
    running = unit.get("ActiveState") in RUNNING_STATES
    r = spec.resources
    return {
        "Id": spec.id,
        "Name": spec.name,
        "Created": _iso(spec.created),
        "Image": spec.image_id,
        "Config": {"Image": spec.image, "Cmd": list(spec.command), "Env": list(spec.env),
                   "WorkingDir": spec.workdir, "User": spec.user,
                   "Hostname": spec.hostname_or_id, "Tty": spec.tty,
                   "OpenStdin": spec.interactive},
        "State": {
            "Status": state_word(spec, unit, status),
            "Running": running,
            "Pid": unit.get("MainPID", 0) if running else 0,
            "ExitCode": status.get("exit_code") or 0,
            "OOMKilled": bool(status.get("oom_killed")),
            "StartedAt": _iso(status.get("started_at")),
            "FinishedAt": _iso(status.get("finished_at")),
        },
        "HostConfig": {"CpuShares": r.cpu_shares or 0, "Memory": r.memory or 0,
                       "NanoCpus": int((r.cpus or 0) * 1e9), "PidsLimit": r.pids_limit,
                       "RestartPolicy": {"Name": spec.restart.value}, "AutoRemove": spec.remove,
                       "ReadonlyRootfs": spec.read_only, "CapAdd": None, "CapDrop": None,
                       "NetworkMode": spec.network.value,
                       "Binds": [f"{m.source}:{m.target}{':ro' if m.readonly else ''}"
                                 for m in spec.mounts]},
        "Capabilities": list(spec.capabilities),
        "Unit": spec.unit,
        "ControlGroup": unit.get("ControlGroup", ""),
    }


def state_word(spec: ContainerSpec, unit: dict[str, Any], status: dict[str, Any]) -> str:
    active = unit.get("ActiveState")
    if active in ("active", "reloading"):
        return "running"
    if active in ("activating", "deactivating"):
        return "restarting" if unit.get("SubState") == "auto-restart" else "running"
    return "exited" if status.get("started_at") else "created"


def _iso(ts: float | None) -> str:
    import datetime

    if not ts:
        return "0001-01-01T00:00:00Z"
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def cgroup_dir(unit: dict[str, Any], controller: str) -> Path | None:
    """The unit's cgroup directory for a controller on this host (v1 or unified)."""
    cg = unit.get("ControlGroup", "").lstrip("/")
    if not cg:
        return None
    for base in (Path("/sys/fs/cgroup") / controller, Path("/sys/fs/cgroup")):
        d: Path = base / cg
        if d.is_dir() and any(d.glob(f"{controller}.*")):
            return d
    return None


def running_unit(sd: Systemd, spec: ContainerSpec) -> dict[str, Any]:
    """The unit's state, for verbs that need a running container (its MainPID, its cgroup)."""
    unit = sd.unit_state(spec.unit)
    if unit.get("ActiveState") not in RUNNING_STATES or not unit.get("MainPID"):
        raise SdctrError(f"container {spec.name} is not running")
    return unit


def all_with_state(paths: Paths, sd: Systemd) -> list[tuple[ContainerSpec, str | None]]:
    states = sd.active_states()
    return [(s, states.get(s.unit)) for s in all_specs(paths)]


def pids_in(unit: dict[str, Any]) -> list[int]:
    d = cgroup_dir(unit, "pids") or cgroup_dir(unit, "memory")
    if d is None:
        return []
    pids: list[int] = []
    for root, _, files in os.walk(d):
        if "cgroup.procs" in files:
            pids += [int(p) for p in Path(root, "cgroup.procs").read_text().split()]
    return sorted(set(pids))
