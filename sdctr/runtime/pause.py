"""`pause`/`unpause`: a running container's processes frozen by the kernel's freezer, and thawed.

Where systemd can freeze a unit (FreezeUnit, v246 on, which needs cgroup v2), systemd does it, so
`systemctl status` shows "frozen" and systemd thaws the unit before stopping it. On cgroup v2
with an older systemd (or units in unit-file mode, which pretends one), sdctr sets the unit's
cgroup.freeze itself and waits for cgroup.events' "frozen 1". Elsewhere (cgroup
v1: RHEL 7/8, hybrid hosts) systemd manages no freezer hierarchy, so sdctr makes the unit's cgroup
there, as runc's systemd driver does, freezes it first and then moves the unit's processes in:
a task attached to a frozen v1 cgroup is frozen on arrival, and a child forked by a task not yet
moved is caught by the next pass, until every process of the unit is inside. Unpause thaws,
moves the processes back to the hierarchy's root (where every process systemd starts lives,
since systemd never touches the v1 freezer) and removes the cgroup.
"""

from __future__ import annotations

import contextlib
import errno
import time
from pathlib import Path

from sdctr import cgroups
from sdctr.log import SdctrError, debug

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdctr.spec import ContainerSpec
    from sdctr.systemd.manager import Systemd
    from sdctr.systemd.properties import Host

FREEZER = cgroups.ROOT / "freezer"
FREEZE_TIMEOUT = 10.0
SLICE = "sdctr.slice"  # sdctr.systemd.properties puts every container there


def control_group(spec: ContainerSpec) -> str:
    """The unit's cgroup as systemd names it (ControlGroup), without asking systemd."""
    return f"/{SLICE}/{spec.unit}"


def by_systemd(host: Host) -> bool:
    return host.cgroup_version == 2 and host.systemd_version >= 246


def is_paused(cg: str) -> bool:
    """Whether the unit's cgroup is frozen (or freezing), from the kernel's own files: cgroup v2's
    cgroup.freeze, or the v1 freezer.state of the cgroup `freeze` made."""
    rel = cg.lstrip("/")
    if not rel:
        return False
    for path, frozen in ((cgroups.ROOT / rel / "cgroup.freeze", ("1",)),
                         (cgroups.ROOT / "unified" / rel / "cgroup.freeze", ("1",)),
                         (FREEZER / rel / "freezer.state", ("FROZEN", "FREEZING"))):
        try:
            if path.read_text().strip() in frozen:
                return True
        except OSError:
            continue
    return False


def freeze(sd: Systemd, host: Host, spec: ContainerSpec, cg: str) -> None:
    hold_watchdog(sd, host, spec, paused=True)
    try:
        _freeze(sd, host, spec, cg)
    except BaseException:
        hold_watchdog(sd, host, spec, paused=False)
        raise


def thaw(sd: Systemd, host: Host, spec: ContainerSpec, cg: str) -> None:
    _thaw(sd, host, spec, cg)
    hold_watchdog(sd, host, spec, paused=False)


NOTIFY_SOCKET = "/run/systemd/notify"  # the system manager's


def hold_watchdog(sd: Systemd, host: Host, spec: ContainerSpec, paused: bool) -> None:
    """The health check's helper (sdctr.init.health) is frozen with its container, so a watchdog
    (--health-on-failure kill or restart) would take a pause for a hang and restart it (seen in
    the test host). Off while paused (WATCHDOG_USEC=0) and back at unpause, restarted, told to
    systemd as the container's PID 1: root may name any sender in SCM_CREDENTIALS, and
    NotifyAccess=all takes a message from any process of the unit."""
    if not spec.health_cmd or spec.health_on_failure not in ("kill", "restart"):
        return
    import socket
    import struct

    from sdctr.systemd.properties import health_properties

    usec = 0 if paused else next(v for n, _, v in health_properties(spec, host) if n == "WatchdogUSec")
    message = f"WATCHDOG_USEC={usec}" + ("" if paused else "\nWATCHDOG=1")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(NOTIFY_SOCKET)
            s.sendmsg([message.encode()], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS,
                                            struct.pack("iII", sd.main_pid(spec.unit), 0, 0))])
    except OSError as e:
        debug(f"{spec.unit}'s watchdog not told of the pause: {e}")


def _freeze(sd: Systemd, host: Host, spec: ContainerSpec, cg: str) -> None:
    if by_systemd(host):
        sd.freeze(spec.unit)
        return
    if host.cgroup_version == 2:  # systemd before 246 on v2 (or unit-file mode): the kernel's own
        _freeze_v2(spec, _v2_dir(cg))
        return
    d = _v1_dir(cg)
    d.mkdir(parents=True, exist_ok=True)
    try:
        _write(d / "freezer.state", "FROZEN")
        deadline = time.monotonic() + FREEZE_TIMEOUT
        while True:
            outside = set(cgroups.processes(cg)) - _procs(d)
            if not outside:
                break
            if time.monotonic() > deadline:
                raise SdctrError(f"cannot pause container {spec.name}: its processes keep forking "
                                 f"faster than they can be frozen ({len(outside)} left)")
            for pid in outside:
                with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                    _write(d / "cgroup.procs", str(pid))
        while (d / "freezer.state").read_text().strip() != "FROZEN":  # FREEZING: not all stopped yet
            if time.monotonic() > deadline:
                raise SdctrError(f"cannot pause container {spec.name}: the kernel did not freeze "
                                 f"it within {FREEZE_TIMEOUT:.0f} s")
            time.sleep(0.01)
    except BaseException:
        _thaw_v1(d)
        raise


def _thaw(sd: Systemd, host: Host, spec: ContainerSpec, cg: str) -> None:
    if by_systemd(host):
        sd.thaw(spec.unit)
        return
    if host.cgroup_version == 2:
        _write(_v2_dir(cg) / "cgroup.freeze", "0")
        return
    _thaw_v1(_v1_dir(cg))


def thaw_if_paused(sd: Systemd, spec: ContainerSpec) -> None:
    """Before stop, kill or rm: a frozen process handles no signal (on v1 not even SIGKILL), so
    Docker resumes a paused container first, and so do we. Two stats when it is not paused."""
    cg = control_group(spec)
    d = _v1_dir(cg)
    if d.is_dir():
        debug(f"thawing {spec.unit} before signalling it")
        _thaw_v1(d)
    elif is_paused(cg):  # cgroup.freeze: set by FreezeUnit, or by us where systemd cannot
        debug(f"thawing {spec.unit} before signalling it")
        with contextlib.suppress(SdctrError):  # no ThawUnit, or systemd did not freeze it
            sd.thaw(spec.unit)
        if is_paused(cg):
            _write(_v2_dir(cg) / "cgroup.freeze", "0")


def _freeze_v2(spec: ContainerSpec, d: Path) -> None:
    """cgroup v2's own freezer, as systemd's FreezeUnit drives it: cgroup.freeze set, then until
    cgroup.events says every process is stopped."""
    _write(d / "cgroup.freeze", "1")
    deadline = time.monotonic() + FREEZE_TIMEOUT
    while "frozen 1" not in (d / "cgroup.events").read_text().splitlines():
        if time.monotonic() > deadline:
            _write(d / "cgroup.freeze", "0")
            raise SdctrError(f"cannot pause container {spec.name}: the kernel did not freeze "
                             f"it within {FREEZE_TIMEOUT:.0f} s")
        time.sleep(0.01)


def _v2_dir(cg: str) -> Path:
    _v1_dir(cg)  # the same check: a container's cgroup, nothing else
    for base in (cgroups.ROOT, cgroups.ROOT / "unified"):
        if (base / cg.lstrip("/") / "cgroup.freeze").exists():
            return base / cg.lstrip("/")
    raise SdctrError(f"{cg} has no cgroup.freeze: this kernel has no cgroup v2 freezer (5.2 on)")


def _v1_dir(cg: str) -> Path:
    rel = cg.lstrip("/")
    if not rel or not rel.startswith(f"{SLICE}/ctr-"):
        raise SdctrError(f"{cg!r} is not a container's cgroup")
    return FREEZER / rel


def _thaw_v1(d: Path) -> None:
    if not d.is_dir():
        return
    _write(d / "freezer.state", "THAWED")
    # thawed, the processes fork again: a child made after a listing is moved by the next pass
    deadline = time.monotonic() + FREEZE_TIMEOUT
    while True:
        for pid in _procs(d):
            with contextlib.suppress(ProcessLookupError):
                _write(FREEZER / "cgroup.procs", str(pid))
        try:
            d.rmdir()
            break
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise SdctrError(f"cannot remove {d}: {e.strerror}") from None
    with contextlib.suppress(OSError):  # another container is paused: it stays
        d.parent.rmdir()


def _procs(d: Path) -> set[int]:
    try:
        return {int(p) for p in (d / "cgroup.procs").read_text().split()}
    except FileNotFoundError:
        return set()


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as e:
        if e.errno == errno.ESRCH:
            raise ProcessLookupError(e.errno, e.strerror) from None
        raise SdctrError(f"cannot write {value!r} to {path}: {e.strerror}") from None
