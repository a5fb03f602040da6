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

from sdctr.log import InitFailed, SdctrError
from sdctr.paths import Paths
from sdctr.runtime import hooks
from sdctr.spec import ContainerSpec, Mount, NetworkMode
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
    if hooks.rootfs_in_own_unit(spec):
        return properties(spec, host, sdctr_argv(root_args(paths)), stdio,
                          poststop=hooks.poststop_command(paths, spec),
                          network=network_commands(paths, spec), joins=joined_unit(paths, spec),
                          rootfs_unit=own_rootfs_unit(paths, spec))
    return properties(spec, host, sdctr_argv(root_args(paths)), stdio,
                      prestart=prestart_command(paths, spec),
                      poststop=hooks.poststop_command(paths, spec),
                      network=network_commands(paths, spec), joins=joined_unit(paths, spec))


def joined_unit(paths: Paths, spec: ContainerSpec) -> str | None:
    """--network container:NAME's unit: the container runs while that one does."""
    if spec.network is not NetworkMode.CONTAINER:
        return None
    from sdctr.net import joined

    return joined.target(paths, spec).unit


def network_commands(paths: Paths, spec: ContainerSpec) -> tuple[list[str], list[str]] | None:
    """A bridge network's set-up and teardown as shell scripts (sdctr/netup.sh, netdown.sh): the
    two Python hooks were ~100 ms of every start."""
    if spec.network is not NetworkMode.BRIDGE:
        return None
    from sdctr.net import setup

    return setup.script_commands(paths, spec)


def own_rootfs_unit(paths: Paths, spec: ContainerSpec) -> str:
    """sdctr-rootfs@<id>.service, the static template's instance: it runs `python3 -m sdctr` on
    the default root, so another root cannot have it."""
    from sdctr.systemd.properties import rootfs_unit

    if not paths.is_default:
        raise SdctrError(f"the {spec.storage} driver's containers run on /var/lib/sdctr only "
                         f"(not --root {paths.root})",
                         hint="its activation unit, sdctr-rootfs@.service, serves the default root")
    return rootfs_unit(spec.id)


def stop_rootfs_unit(sd: Systemd, spec: ContainerSpec) -> None:
    """Waits for the container's rootfs unit to be stopped (it stops by itself once the container
    has: this makes that a job we wait for), so that no device or mount is left when we return."""
    if hooks.rootfs_in_own_unit(spec):
        from sdctr.systemd.properties import rootfs_unit

        sd.stop(rootfs_unit(spec.id))


def prestart_command(paths: Paths, spec: ContainerSpec) -> list[str] | None:
    """The snapshot was prepared at create time, so activating it is the driver's command, which
    the unit runs without a Python process of its own (a hundred milliseconds of every start).
    An ephemeral container's writable layer is reset first: that stays with the hook."""
    if spec.ephemeral:
        return None
    snap = hooks.snapshotter_of(paths, spec)
    return snap.activate_command(spec.id, hooks.layers_of(paths, spec), paths.rootfs(spec.id))


def create(paths: Paths, spec: ContainerSpec, image: Image, *, starting: bool = False) -> ContainerSpec:
    """The record and the writable snapshot; nothing runs yet (`docker create`). The record names
    the storage driver and the layer chain, so starting it never needs the image store or the
    configuration again. The spec as saved: named, if it had no name. A bridge network's
    refusals (address, port with `starting`, subnet) come first, before anything is made."""
    from sdctr.storage import drivers
    from sdctr.thinhost import chosen_driver

    if spec.network is NetworkMode.BRIDGE:
        from sdctr.net import setup

        others = all_specs(paths)
        spec = setup.assign_host_ports(spec, others)  # -P, -p PORT: free host ports, now
        setup.preflight(paths, spec, others, starting=starting)
    elif spec.network is NetworkMode.CONTAINER:
        from sdctr.net import joined

        spec = joined.resolve(paths, spec)
    elif any(h.endswith(":host-gateway") for h in spec.add_hosts):  # (the bridge's: resolved at start)
        from sdctr.net.network import default_network

        gateway = default_network().gateway_text  # Docker's: the default bridge's, for host and none too
        spec = spec.replace(add_hosts=tuple(h.replace(":host-gateway", f":{gateway}")
                                            for h in spec.add_hosts))

    spec = spec.replace(storage=spec.storage or chosen_driver(paths.root)[0], layers=image.layers)
    snap = drivers.driver(spec.storage, paths)
    unpacked = snap.unpack(image)
    if unpacked:  # the first container of a pulled image: now its SIZE is known
        from sdctr.image import store as images

        images.record_unpacked(paths, unpacked)
    from sdctr.image import store as images

    # the image is checked and the record made under the lock `rmi` holds: one cannot miss the other
    def check() -> None:
        images.require(paths, image)
        if any(m.kind == "volume" for m in spec.mounts):  # named volumes, made on first use
            from sdctr.runtime import volumes

            volumes.ensure(paths, spec)

    from sdctr.state import locked

    # record and snapshot under one hold of the store's lock: whoever finds a record without its
    # snapshot under that lock knows its maker died between the two (finish_create)
    with locked(paths):
        spec = save_spec(paths, spec, check=check)
        try:
            snap.prepare(spec.id, spec.layers)
            paths.rootfs(spec.id).mkdir(parents=True, exist_ok=True)  # the unit's mount point
        except BaseException:
            hooks.remove_container(paths, spec)
            raise
    _event(spec, "create")
    return spec


def _event(spec: ContainerSpec, action: str) -> None:
    """sdctr's own events for `sdctr events` (systemd's journal has the unit's start and exit)."""
    from sdctr.runtime import events

    events.emit(spec, action)


def start(paths: Paths, spec: ContainerSpec, sd: Systemd, host: Host, *,
          stdio: tuple[int, int, int] | None = None) -> None:
    if spec.declared:  # its unit is the generator's, on disk: started as any other unit
        sd.start(spec.unit)
        return
    if spec.network is NetworkMode.CONTAINER:  # Docker's "cannot join network of a non running container"
        from sdctr.net import joined

        target = joined.target(paths, spec)
        if not is_running(sd, target):
            raise SdctrError(f"--network container:{target.name}: container {target.name} is not running",
                             hint=f"start it first: sdctr start {target.name}")
    props = unit_props(paths, spec, host, stdio)
    if hooks.rootfs_in_own_unit(spec):  # what its rootfs unit's shell path reads
        hooks.write_rootfs_env(paths, spec)
    try:
        sd.start_transient(spec.unit, props, host)
    except SdctrError as e:
        if not hooks.rootfs_in_own_unit(spec) or "dependency" not in str(e):
            raise
        from sdctr.systemd.manager import journal_tail
        from sdctr.systemd.properties import rootfs_unit

        # the container's own journal only says a dependency failed: the activation's says why
        raise SdctrError(f"{spec.unit} failed to start: its root file system could not be activated",
                         hint=journal_tail(rootfs_unit(spec.id))) from e


def run(paths: Paths, spec: ContainerSpec, image: Image, sd: Systemd, host: Host, *,
        stdio: tuple[int, int, int] | None = None) -> ContainerSpec:
    """create + start; on a failed start nothing is left: no record, snapshot or unit. The spec
    as saved."""
    spec = create(paths, spec, image, starting=True)
    if spec.attached:  # the exit file is ours to read: a listing must not sweep it meanwhile
        from sdctr.state import reader_mark

        paths.run.mkdir(parents=True, exist_ok=True)
        reader_mark(paths, spec.id).touch(mode=0o600)
    try:
        start(paths, spec, sd, host, stdio=stdio)
    except BaseException as e:
        with contextlib.suppress(Exception):  # interrupted while it runs: it must not outlive us
            sd.kill(spec.unit, signal.SIGKILL, who="all")
        sd.settle(spec.unit)  # a failed start job ends before ExecStopPost has run
        sd.reset_failed(spec.unit)
        with contextlib.suppress(SdctrError):
            stop_rootfs_unit(sd, spec)
        with contextlib.suppress(SdctrError):
            sd.remove_unit_file(spec.unit)
        code = _take_exit_file(paths, spec)
        hooks.remove_container(paths, spec)
        if isinstance(e, SdctrError) and code in (126, 127):
            e.status = code  # a --rm unit is collected at once; its poststop hook kept the init's status
        if isinstance(e, InitFailed) and stdio is not None:
            e.shown = True  # the init wrote its line on our stderr, which it was given
        raise
    return spec


def _take_exit_file(paths: Paths, spec: ContainerSpec) -> int | None:
    """The exit status the poststop hook left for an attached run (None while it has not)."""
    path = hooks.exit_file(paths, spec.id)
    try:
        status = json.loads(path.read_text())
        path.unlink()
        from sdctr.state import reader_mark

        with contextlib.suppress(FileNotFoundError):
            reader_mark(paths, spec.id).unlink()
        return _status_code(status)
    except (FileNotFoundError, ValueError):
        return None


def wait_exit(paths: Paths, spec: ContainerSpec, sd: Systemd, *, attached: bool = True,
              poll: float = 0.002) -> int:
    """Until the unit has stopped and its poststop hook has recorded the exit; the status.

    The attached run watches for the exit file its poststop hook leaves for it (a stat, cheap
    to poll) and asks systemd only once a second, in case the hook never ran; anyone else
    (`wait`) asks systemd every `poll` seconds and reads the record, or, for a --rm container
    whose record goes with it, the unit's own exit status."""
    if not attached and spec.remove:
        code = _wait_unit_exit(spec, sd, poll)
        if code is not None:
            return code
    ask_every = 1.0 if attached else poll
    next_ask = time.monotonic() + ask_every
    while True:
        code = _take_exit_file(paths, spec) if attached else None
        if code is not None:
            return code
        if time.monotonic() >= next_ask:
            next_ask = time.monotonic() + ask_every
            if not any(sd.active_state(u) in RUNNING_STATES for u in _units(spec)):
                time.sleep(0.2 if attached else 0)  # the file may be a moment behind
                code = _take_exit_file(paths, spec) if attached else _kept_exit(paths, spec.id)
                return code if code is not None else _status_code(read_status(paths, spec.id))
        time.sleep(poll)


def _units(spec: ContainerSpec) -> list[str]:
    """The container's unit, and its rootfs unit where it has one (active until the storage is
    handed back)."""
    if not hooks.rootfs_in_own_unit(spec):
        return [spec.unit]
    from sdctr.systemd.properties import rootfs_unit

    return [spec.unit, rootfs_unit(spec.id)]


def wait_removed(paths: Paths, sd: Systemd, ref: str, *, poll: float = 0.1) -> int | None:
    """`wait` on a --rm container whose record is gone already: the exit status its poststop hook
    kept (state.EXIT_KEPT), found by full id or unique id prefix; None where there is none. The
    record goes just before the file is written, both in ExecStopPost: while the unit is still
    deactivating, the file is on its way."""
    from sdctr.state import EXIT_SUFFIX

    unit = f"ctr-{ref[:12]}.service" if len(ref) >= 12 else None
    while True:
        try:
            names = [n[:-len(EXIT_SUFFIX)] for n in os.listdir(paths.run)
                     if n.endswith(EXIT_SUFFIX) and not n.startswith(".")]
        except FileNotFoundError:
            names = []
        found = [cid for cid in names if len(ref) >= 3 and cid.startswith(ref)]
        if len(found) == 1:
            code = _kept_exit(paths, found[0])
            if code is not None:
                return code
        if unit is None or sd.active_state(unit) not in RUNNING_STATES:
            return None
        time.sleep(poll)


def _kept_exit(paths: Paths, cid: str) -> int | None:
    """The exit status in a --rm container's exit file, left there for others to read too."""
    try:
        return _status_code(json.loads(hooks.exit_file(paths, cid).read_text()))
    except (FileNotFoundError, ValueError):
        return None


def _wait_unit_exit(spec: ContainerSpec, sd: Systemd, poll: float) -> int | None:
    """The exit status systemd saw, read from the unit kept loaded by our reference until then
    (None where no reference can be had: the record's, as for any container)."""
    held = sd.hold(spec.unit)
    if held is None:
        return None
    while held.active_state(spec.unit) not in ("inactive", "failed"):
        time.sleep(poll)
    unit = held.unit_state(spec.unit)
    code, status = unit.get("ExecMainCode"), int(unit.get("ExecMainStatus") or 0)
    if code == 1:  # CLD_EXITED; CLD_KILLED (2) and CLD_DUMPED (3) as a shell reports a signal
        return status
    return 128 + status if code in (2, 3) else None


def _status_code(status: dict[str, Any]) -> int:
    code = status.get("exit_code")
    return int(code) if code is not None else 125


def is_running(sd: Systemd, spec: ContainerSpec) -> bool:
    return sd.active_state(spec.unit) in RUNNING_STATES


def stop(sd: Systemd, spec: ContainerSpec, timeout: float | None) -> None:
    """`docker stop [-t N]`: SIGTERM, SIGKILL after the grace period (the unit's own, or N), then
    the stop job, which runs the hooks. Both signals go to the main process alone, the container's
    PID 1, whose end takes its PID namespace down: a SIGKILL to the whole unit would hit the stop
    hooks too (issue 17: `stop -t 0` left the rootfs mounted and the unit failed)."""
    if not is_running(sd, spec):
        stop_rootfs_unit(sd, spec)
        return
    _thaw_if_paused(sd, spec)
    if timeout is not None:
        _signal_main(sd, spec, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while sd.unit_state(spec.unit).get("MainPID") and time.monotonic() < deadline:
            time.sleep(0.05)
        if sd.unit_state(spec.unit).get("MainPID"):
            _signal_main(sd, spec, signal.SIGKILL)
    # our signals end the main process with 143 or 137, which the unit's SuccessExitStatus counts
    # as a success: a container stopped on request is no failed unit (DESIGN.md, I6)
    sd.stop(spec.unit)
    stop_rootfs_unit(sd, spec)


def _signal_main(sd: Systemd, spec: ContainerSpec, signum: int) -> None:
    with contextlib.suppress(SdctrError):  # no main process (any more): nothing to signal
        sd.kill(spec.unit, signum, who="main")


def _thaw_if_paused(sd: Systemd, spec: ContainerSpec) -> None:
    """A paused container's processes take no signal until thawed: resumed first, as Docker does."""
    from sdctr.runtime import pause

    pause.thaw_if_paused(sd, spec)


def kill(sd: Systemd, spec: ContainerSpec, signum: int) -> None:
    if not is_running(sd, spec):
        raise SdctrError(f"cannot kill container {spec.name}: it is not running",
                         hint=f"'sdctr start {spec.name}' starts it again")
    _thaw_if_paused(sd, spec)
    sd.kill(spec.unit, signum)


def remove(paths: Paths, sd: Systemd, spec: ContainerSpec, force: bool) -> None:
    if is_running(sd, spec):
        if not force:
            raise SdctrError(f"you cannot remove a running container {spec.short_id}",
                             hint="stop it first, or remove it with 'rm -f'")
        _thaw_if_paused(sd, spec)
        _signal_main(sd, spec, signal.SIGKILL)  # not "all": the stop hooks must run to the end
        sd.stop(spec.unit)
    stop_rootfs_unit(sd, spec)
    sd.reset_failed(spec.unit)
    sd.remove_unit_file(spec.unit)
    if spec.declared:  # `sdctr update`'s drop-ins go with the container they were for
        sd.remove_control_drop_ins(spec.unit)
    hooks.remove_container(paths, spec)
    _event(spec, "destroy")


# --- describing containers ----------------------------------------------------------------------

def _health(paths: Paths, spec: ContainerSpec, running: bool) -> dict[str, Any]:
    """State.Health, as Docker's, for a container with a health check."""
    if not spec.health_cmd:
        return {}
    from sdctr.init import health

    state = health.read(paths, spec.id) if running else None
    return {"Health": state or {"Status": health.STARTING if running else health.UNHEALTHY,
                                "FailingStreak": 0, "Log": []}}


def storage_driver(spec: ContainerSpec) -> str:
    from sdctr.storage.drivers import LEGACY

    return spec.storage or LEGACY


def describe(paths: Paths, spec: ContainerSpec, unit: dict[str, Any]) -> dict[str, Any]:
    """`inspect`'s document: Docker's field names where Docker has one."""
    status = read_status(paths, spec.id)
    running = unit.get("ActiveState") in RUNNING_STATES
    from sdctr.runtime import pause

    paused = running and pause.is_paused(unit.get("ControlGroup") or pause.control_group(spec))
    r = spec.resources
    return {
        "Id": spec.id,
        "Name": spec.name,
        "Created": _iso(spec.created),
        "Path": spec.command[0] if spec.command else "",
        "Args": list(spec.command[1:]),
        "Image": spec.image_id,
        "Driver": storage_driver(spec),  # the record's: a changed setting does not move it
        "RestartCount": restart_count(spec, unit),
        "Config": {"Image": spec.image, "Cmd": list(spec.command), "Env": list(spec.env),
                   "WorkingDir": spec.workdir, "User": spec.user,
                   "Hostname": spec.hostname_or_id, "Tty": spec.tty,
                   "OpenStdin": spec.interactive, "Labels": spec.label_map},
        "State": {
            "Status": "paused" if paused else state_word(spec, unit, status),
            "Running": running,
            "Paused": paused,
            "Pid": unit.get("MainPID", 0) if running else 0,
            "ExitCode": status.get("exit_code") or 0,
            "OOMKilled": bool(status.get("oom_killed")),
            "StartedAt": _iso(status.get("started_at")),
            "FinishedAt": _iso(status.get("finished_at")),
            **_health(paths, spec, running),
        },
        "HostConfig": {"CpuShares": r.cpu_shares or 0, "Memory": r.memory or 0,
                       "NanoCpus": int((r.cpus or 0) * 1e9), "PidsLimit": r.pids_limit,
                       "MemorySwap": r.memory_swap or 0, "CpusetCpus": r.cpuset_cpus,
                       "BlkioWeight": r.blkio_weight or 0, "Ulimits": ulimits_document(r.ulimits),
                       "UnitProperties": list(r.properties),  # --property's: sdctr's own field
                       "RestartPolicy": {"Name": spec.restart.value,
                                         "MaximumRetryCount": spec.restart_retries},
                       "AutoRemove": spec.remove,
                       "ReadonlyRootfs": spec.read_only, "CapAdd": None, "CapDrop": None,
                       "NetworkMode": spec.network_mode,
                       "Binds": [f"{m.source}:{m.target}{':ro' if m.readonly else ''}"
                                 for m in spec.mounts if m.kind != "tmpfs"],
                       "Tmpfs": {m.target: m.options for m in spec.mounts if m.kind == "tmpfs"}},
        "Mounts": [mount_document(paths, m) for m in spec.mounts],
        "NetworkSettings": network_settings(paths, spec),
        "Capabilities": list(spec.capabilities),
        "Unit": spec.unit,
        "ControlGroup": unit.get("ControlGroup", ""),
    }


def ulimits_document(ulimits: tuple[str, ...]) -> list[dict[str, Any]]:
    """HostConfig.Ulimits, as Docker's: -1 for no limit."""
    def number(text: str) -> int:
        return -1 if text == "infinity" else int(text)

    out = []
    for u in ulimits:
        name, _, limits = u.partition("=")
        soft, _, hard = limits.partition(":")
        out.append({"Name": name, "Soft": number(soft), "Hard": number(hard)})
    return out


def mount_document(paths: Paths, m: Mount) -> dict[str, Any]:
    """One of inspect's .Mounts, as Docker shows a bind, a volume and a tmpfs."""
    doc: dict[str, Any] = {"Type": m.kind, "Source": m.source, "Destination": m.target,
                           "Mode": "ro" if m.readonly else "", "RW": not m.readonly}
    if m.kind == "volume":
        doc.update(Name=m.source, Source=str(paths.volume_data(m.source)), Driver="local",
                   Mode="ro" if m.readonly else "z")
    elif m.kind == "bind":
        doc["Propagation"] = "rprivate"
    return doc


def restart_count(spec: ContainerSpec, unit: dict[str, Any]) -> int:
    """Docker's RestartCount from systemd's NRestarts (since the unit was last started by hand),
    which also counts the restart that on-failure:N's start limit refused: the N+1th."""
    count = int(unit.get("NRestarts") or 0)
    return min(count, spec.restart_retries) if spec.restart_retries else count


def network_settings(paths: Paths, spec: ContainerSpec) -> dict[str, Any]:
    from sdctr.spec import NetworkMode

    if spec.network is not NetworkMode.BRIDGE:
        return {"Ports": {}, "IPAddress": "", "Gateway": "", "MacAddress": "", "Networks": {
            spec.network.value: {"IPAddress": "", "Gateway": "", "MacAddress": ""}}}
    from sdctr.net import setup

    return setup.settings(paths, spec)


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


def running_unit(sd: Systemd, spec: ContainerSpec) -> dict[str, Any]:
    """The unit's state, for verbs that need a running container (its MainPID, its cgroup).
    A container in another state is Docker's status 1 (`docker exec`, `top`, `pause`), as `kill`'s."""
    unit = sd.unit_state(spec.unit)
    if unit.get("SubState") == "auto-restart":  # (systemd's Restart=, between two runs)
        raise SdctrError(f"container {spec.name} is restarting", hint="wait until it runs, then try again",
                         status=1)
    if unit.get("ActiveState") == "activating":  # its hooks or its init run: no PID 1 to join yet
        raise SdctrError(f"container {spec.name} is starting", hint="wait until it runs, then try again",
                         status=1)
    if unit.get("ActiveState") not in RUNNING_STATES or not unit.get("MainPID"):
        raise SdctrError(f"container {spec.name} is not running", status=1)
    return unit


def all_with_state(paths: Paths, sd: Systemd) -> list[tuple[ContainerSpec, str | None]]:
    """Every container and its unit's ActiveState (None: not loaded); a stop its hooks left
    unfinished is finished on the way (finish_stop), and a --rm container it removed is not listed."""
    states = sd.active_states()
    found = [(s, states.get(s.unit)) for s in all_specs(paths)]
    _finish_netdown_of_removed(paths, sd, {s.id for s, _ in found})
    return [(s, active) for s, active in found if not (finish_stop(paths, sd, s, active) and s.remove)]


def _finish_netdown_of_removed(paths: Paths, sd: Systemd, records: set[str]) -> None:
    """A network namespace still pinned for a container whose record is gone: a --rm container
    whose netdown was cut short (its poststop went on and removed the record). A record exists
    before its unit starts and goes after its netdown, so no start can be under way for it."""
    try:
        names = os.listdir(paths.netns("0").parent)
    except FileNotFoundError:
        return
    for cid in {n.split(".")[0] for n in names} - records:
        if len(cid) == 64 and sd.idle(f"ctr-{cid[:12]}.service"):
            hooks.netdown(paths, cid)


def finish_create(paths: Paths, spec: ContainerSpec) -> None:
    """A record without its snapshot: its `create` was killed between the two (issue 17: 1 of 608
    trials), seen under the store's lock that create holds across both. The snapshot is made now
    from the layers the record names, as `system check --repair` does, so the container starts."""
    if not spec.storage:  # (a record from before create named its driver: not this case)
        return
    snap = hooks.snapshotter_of(paths, spec)
    if hooks.has_snapshot(snap, spec.id):
        return
    from sdctr.log import debug
    from sdctr.state import locked

    # (a thin prepare takes the pool's lock under this one, as create does: never the other way)
    with locked(paths):
        if hooks.has_snapshot(snap, spec.id) or not paths.container_dir(spec.id).is_dir():
            return
        debug(f"container {spec.short_id}: its create was cut short: making its snapshot")
        try:
            snap.prepare(spec.id, spec.layers)
            paths.rootfs(spec.id).mkdir(parents=True, exist_ok=True)
        except (SdctrError, OSError) as e:  # (a layer gone too: `system check` names it)
            debug(f"container {spec.short_id}: its snapshot cannot be made: {e}")


def _rootfs_unit_idle(sd: Systemd, spec: ContainerSpec) -> bool:
    """Whether a finished stop may do the storage's part itself: no rootfs unit, or one that is
    not (about to be) doing it. Its own stop follows the container's (StopWhenUnneeded), so while
    it runs, its rootfs_down deactivates (and for --rm removes); once it is idle, a rootfs_down
    killed halfway is finished here (each step idempotent)."""
    if not hooks.rootfs_in_own_unit(spec):
        return True
    from sdctr.systemd.properties import rootfs_unit

    return sd.idle(rootfs_unit(spec.id))


def rootfs_left(paths: Paths, spec: ContainerSpec) -> bool:
    """Whether a thin container's device is active or its rootfs mounted (a stat and a read of
    mountinfo): right while it runs, a leftover of a cut-short rootfs unit once it does not."""
    snap = hooks.snapshotter_of(paths, spec)
    from sdctr.storage.devicemapper import DeviceMapperSnapshotter, container_name
    from sdctr.storage.mountinfo import mounts_at

    if not isinstance(snap, DeviceMapperSnapshotter):
        return False
    from sdctr.storage import dmsetup

    # the kernel's names, not /dev/mapper: a `dmsetup create` killed before udev made the node
    # leaves a device without one (the fault campaign's rootfs start killed 50 ms in)
    return (snap.dm_name(container_name(spec.id)) in dmsetup.kernel_names()
            or bool(mounts_at(paths.rootfs(spec.id))))


def _finish_rootfs(paths: Paths, sd: Systemd, spec: ContainerSpec) -> bool:
    """What a thin container's rootfs unit did not finish, finished by the next command (issue 12's
    fault campaign: sdctr/rootfs.sh killed after its `dmsetup create` left the device active with
    the container never started; killed in its stop, the device active or mounted, or a --rm
    container's record kept; the failed unit collected, so systemd shows nothing). The signs,
    for a container whose unit does not run: its device node or rootfs mount, or a --rm record
    whose stop was recorded. Both units are asked again under the store's lock (a start since is
    left alone), then the rootfs unit's own hook, each step idempotent."""
    if not hooks.rootfs_in_own_unit(spec):
        return False
    if not (rootfs_left(paths, spec) or (spec.remove and read_status(paths, spec.id).get("finished_at"))):
        return False
    from sdctr.state import locked
    from sdctr.systemd.properties import rootfs_unit

    with locked(paths):
        if not (paths.container_dir(spec.id).is_dir() and sd.idle(spec.unit) and _rootfs_unit_idle(sd, spec)):
            return False
        from sdctr.log import debug

        debug(f"{rootfs_unit(spec.id)} stopped without its script finishing: finishing it")
        hooks.rootfs_down(paths, spec.id)
        with contextlib.suppress(SdctrError):
            sd.reset_failed(rootfs_unit(spec.id))
    return True


def finish_stop_of(paths: Paths, sd: Systemd, spec: ContainerSpec) -> bool:
    """finish_stop() for one container, its unit asked for its state."""
    return finish_stop(paths, sd, spec, sd.active_state(spec.unit))


def finish_stop(paths: Paths, sd: Systemd, spec: ContainerSpec, active: str | None) -> bool:
    """What the unit's ExecStopPost did not finish, finished by the next command that looks at the
    container, as Docker's daemon does for a container whose monitor died (issue 17: a poststop
    hook killed while a bridge container stopped left its rootfs mounted, its record "running"
    and its network up, with the unit collected). The signs, cheap to read for every container:
    a unit that does not run (`active`) and a record still "running", or a network namespace
    still pinned. The unit is asked again under the store's lock, so that a start since (its job
    queued, its hooks running) is left alone; then the hooks' own idempotent steps. True if it
    finished anything (a --rm container's record is gone then)."""
    finish_create(paths, spec)
    if active in RUNNING_STATES:
        return False
    pinned = spec.network is NetworkMode.BRIDGE and os.path.lexists(paths.netns(spec.id))
    if not pinned and not read_status(paths, spec.id).get("running"):
        return _finish_rootfs(paths, sd, spec)
    from sdctr.state import locked

    with locked(paths):
        status = read_status(paths, spec.id)
        pinned = spec.network is NetworkMode.BRIDGE and os.path.lexists(paths.netns(spec.id))
        if not (pinned or status.get("running")) or not sd.idle(spec.unit):
            return False
        from sdctr.log import debug

        debug(f"{spec.unit} stopped without its hooks finishing: finishing them")
        if spec.network is NetworkMode.BRIDGE:
            hooks.netdown(paths, spec.id)
        if status.get("running"):
            # a failed unit systemd kept: its exit status; else 255, as Docker's daemon records a
            # container it finds dead at its restart
            unit = sd.unit_state(spec.unit)
            code, number = unit.get("ExecMainCode"), int(unit.get("ExecMainStatus") or 0)
            hooks.tear_down(paths, spec, dict(
                running=False, finished_at=time.time(), result=unit.get("Result") or "unknown",
                exit_code=number if code == 1 else 128 + number if code in (2, 3) else 255),
                storage=_rootfs_unit_idle(sd, spec))
    return True

