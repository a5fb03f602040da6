"""The only module that talks to systemd.

`properties()` is a pure function from a spec and the host's facts to unit properties, tested
without any bus. The rest is a thin layer over sd-bus (sdctr.sdbus): start a transient unit as a job and wait
for it, stop, kill, query. On a systemd too old to accept ExecStartPre/ExecStopPost on transient
services (RHEL7's 219), the same properties are written as a unit file under /run/systemd/system.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sdctr.log import SdctrError, debug
from sdctr.paths import STOP_SCRIPT
from sdctr.record import Record
from sdctr.spec import ContainerSpec

TYPE_CHECKING = False  # typing costs ~3 ms to import, and run needs none of it
if TYPE_CHECKING:
    from typing import Any

Property = tuple[str, str, "Any"]  # (name, D-Bus signature, value)

# Transient services accept ExecStartPre/ExecStopPost and LogExtraFields from v236 on.
FIRST_FULL_TRANSIENT = 236
UNIT_DIR = Path("/run/systemd/system")

JOB_TIMEOUT = 90.0
INFINITY = 2**64 - 1


class Host(Record):
    cgroup_version: int  # 1: the v1 controllers (RHEL7-style, hybrid included); 2: unified
    systemd_version: int

    @property
    def transient_hooks(self) -> bool:
        return self.systemd_version >= FIRST_FULL_TRANSIENT


def cgroup_version() -> int:
    """2 when /sys/fs/cgroup itself is the unified hierarchy; a hybrid host's v1 controllers
    (where limits really live) make it 1."""
    return 2 if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else 1


def cpu_weight(shares: int) -> int:
    """runc's current CPUShares -> CPUWeight mapping (a quadratic in log2 space), so that 1024,
    the default share, is 100, the default weight; 2 -> 1 and 262144 -> 10000 at the ends."""
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    lg = math.log2(shares)
    exponent = (lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0
    return math.ceil(10**exponent)


def sdctr_argv(root_args: Sequence[str]) -> list[str]:
    """How the unit calls back into sdctr: the same interpreter and package as this process."""
    argv0 = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(argv0) == "sdctr" and os.access(argv0, os.X_OK):
        return [argv0, *root_args]
    return [sys.executable, "-m", "sdctr", *root_args]


def properties(spec: ContainerSpec, host: Host, sdctr: Sequence[str],
               stdio: tuple[int, int, int] | None = None, *,
               prestart: Sequence[str] | None = None,
               poststop: Sequence[str] | None = None) -> list[Property]:
    """Unit properties for a container. `sdctr` is the argv prefix that runs this program;
    `stdio`, for an attached run, the caller's descriptors (else the journal); `prestart`, a
    command that readies the root file system without our hook (the storage driver's);
    `poststop`, a command that cleans up without Python in the common case and runs our hook,
    whose argv is appended to it, otherwise."""
    r = spec.resources

    def exec_(*args: str) -> list[tuple[str, list[str], bool]]:
        argv = [*sdctr, *args]
        return [(argv[0], argv, False)]

    hook_poststop = [*sdctr, "hook", "poststop", spec.id]
    stop_post = [*poststop, *hook_poststop] if poststop else hook_poststop
    props: list[Property] = [
        ("Description", "s", f"sdctr container {spec.name} ({spec.image})"),
        ("Slice", "s", "sdctr.slice"),
        # The init reports READY and hands over its child, the container's PID 1, as MAINPID:
        # systemd then supervises the container itself and no waiter of ours stays behind.
        # (Type=forking with a PID file loses a race with commands that exit at once.)
        ("Type", "s", "notify"),
        ("NotifyAccess", "s", "main"),
        ("ExecStartPre", "a(sasb)", [(prestart[0], list(prestart), False)] if prestart
         else exec_("hook", "prestart", spec.id)),
        ("ExecStart", "a(sasb)", exec_("init", spec.id)),
        # SIGTERM to the main process, and the wait for it that systemd would not do (stop.sh)
        ("ExecStop", "a(sasb)", [("/bin/sh", ["/bin/sh", STOP_SCRIPT], False)]),
        ("ExecStopPost", "a(sasb)", [(stop_post[0], stop_post, False)]),
        # SIGTERM to the container's PID 1, which forwards it; SIGKILL to all at the timeout.
        ("KillMode", "s", "mixed"),
        ("TimeoutStopUSec", "t", spec.stop_timeout * 1_000_000),
        ("Restart", "s", spec.restart.systemd_restart()),
        ("SyslogIdentifier", "s", spec.name),
        # The field names of Docker's journald log driver, so existing queries keep working.
        ("LogExtraFields", "aay", [f"{k}={v}".encode() for k, v in (
            ("CONTAINER_ID", spec.short_id), ("CONTAINER_ID_FULL", spec.id),
            ("CONTAINER_NAME", spec.name), ("IMAGE_NAME", spec.image))]),
        ("TasksMax", "t", INFINITY if r.pids_limit < 0 else r.pids_limit),
    ]
    if r.cpu_shares is not None:
        props.append(("CPUShares", "t", r.cpu_shares) if host.cgroup_version == 1
                     else ("CPUWeight", "t", cpu_weight(r.cpu_shares)))
    if r.memory is not None:
        props.append(("MemoryLimit", "t", r.memory) if host.cgroup_version == 1
                     else ("MemoryMax", "t", r.memory))
    if r.cpus is not None:
        props.append(("CPUQuotaPerSecUSec", "t", int(r.cpus * 1_000_000)))
    if spec.remove:  # a failed --rm container must not linger as a failed unit
        props.append(("CollectMode", "s", "inactive-or-failed"))
    if stdio is None:
        props += [("StandardInput", "s", "null"), ("StandardOutput", "s", "journal"),
                  ("StandardError", "s", "journal")]
    else:
        props += [("StandardInputFileDescriptor", "h", stdio[0]),
                  ("StandardOutputFileDescriptor", "h", stdio[1]),
                  ("StandardErrorFileDescriptor", "h", stdio[2])]
    return props


# --- unit files, for systemd older than FIRST_FULL_TRANSIENT ---------------------------------

_SECTION_UNIT = {"Description", "CollectMode"}
_FILE_NAMES = {"TimeoutStopUSec": "TimeoutStopSec", "CPUQuotaPerSecUSec": "CPUQuota"}


def unit_file(props: Sequence[Property]) -> str:
    """The same unit as a file: what an old systemd cannot take over D-Bus, it reads from disk."""
    unit: list[str] = []
    service: list[str] = []
    for name, _, value in props:
        key = _FILE_NAMES.get(name, name)
        if name.startswith("Exec"):
            rendered = " ".join(_quote(a) for a in value[0][1])
        elif name == "LogExtraFields":
            for field in value:
                service.append(f"LogExtraFields={_quote(field.decode())}")
            continue
        elif name == "TimeoutStopUSec":
            rendered = f"{value / 1_000_000:g}s"
        elif name == "CPUQuotaPerSecUSec":
            rendered = f"{value / 10_000:g}%"
        elif name == "TasksMax" and value == INFINITY:
            rendered = "infinity"
        elif name.endswith("FileDescriptor"):
            raise SdctrError("an attached run needs a systemd that takes descriptors (v236 or newer)",
                             hint="run it detached with -d")
        else:
            rendered = str(value)
        (unit if name in _SECTION_UNIT else service).append(f"{key}={rendered}")
    return "[Unit]\n" + "\n".join(unit) + "\n\n[Service]\n" + "\n".join(service) + "\n"


def _quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "/._-=:@+," for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- the bus -----------------------------------------------------------------------------------

MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT = "org.freedesktop.systemd1.Unit"
SERVICE = "org.freedesktop.systemd1.Service"
# what unit_state() reads: (interface, property, key in its answer)
_STATE_PROPERTIES = (
    (UNIT, "ActiveState"), (UNIT, "SubState"), (SERVICE, "MainPID"), (SERVICE, "ExecMainCode"),
    (SERVICE, "ExecMainStatus"), (SERVICE, "Result"), (SERVICE, "ControlGroup"),
    (UNIT, "ActiveEnterTimestamp"), (SERVICE, "ExecMainStartTimestamp"), (UNIT, "InactiveEnterTimestamp"),
)


class Systemd:
    """A connection to PID 1 over sd-bus (sdctr.sdbus), imported here, not at module load:
    `sdctr --help` and the unit tests of properties() never load libsystemd. One connection
    serves every call of a command."""

    def __init__(self, direct: bool | None = None) -> None:
        from sdctr.systemd.bus import Bus

        self._bus = Bus(direct)
        self._watching_jobs = False

    def _manager(self, method: str, signature: str = "", *args: Any) -> Any:
        reply = self._bus.call(MANAGER_PATH, MANAGER, method, signature, *args)
        return reply[0] if reply else None

    def version(self) -> int:
        raw = str(self._bus.get(MANAGER_PATH, MANAGER, "Version"))
        digits = "".join(c for c in raw.split(".", 1)[0].split("-", 1)[0] if c.isdigit())
        return int(digits or 0)

    def host(self, force_unit_file: bool = False) -> Host:
        version = 0 if force_unit_file else self.version()
        return Host(cgroup_version=cgroup_version(), systemd_version=version)

    def start_transient(self, unit: str, props: Sequence[Property], host: Host) -> None:
        """Start the unit as a job and wait for it; 'unit exists' gets reset-failed and one retry."""
        if not host.transient_hooks:
            self._write_unit_file(unit, props)
            self.start(unit)
            return
        args = [(name, (sig, value)) for name, sig, value in props]
        for attempt in (1, 2):
            try:
                self._run_job(unit, lambda: self._manager("StartTransientUnit", "ssa(sv)a(sa(sv))",
                                                          unit, "fail", args, []))
                return
            except _UnitExists:
                if attempt == 2:
                    raise SdctrError(f"{unit} exists already and could not be reset") from None
                debug(f"{unit} exists: reset-failed and retry")
                self.reset_failed(unit)

    def start(self, unit: str) -> None:
        self._run_job(unit, lambda: self._manager("StartUnit", "ss", unit, "replace"))

    def stop(self, unit: str, timeout: float | None = None) -> None:
        """Stop with the unit's own TimeoutStopSec, or `docker stop -t`'s: SIGTERM to the main
        process, SIGKILL to all after `timeout` seconds (systemd cannot change TimeoutStopSec of
        a running unit), then the stop job for the hooks to run."""
        if timeout is not None:
            self.kill(unit, 15, who="main")
            if not self._wait_inactive(unit, timeout):
                self.kill(unit, 9, who="all")
        self._run_job(unit, lambda: self._manager("StopUnit", "ss", unit, "replace"),
                      expect_active=False)

    def settle(self, unit: str, timeout: float = 15) -> None:
        """Until the unit is in no transition (its stop hooks have run)."""
        self._wait_inactive(unit, timeout)

    def _wait_inactive(self, unit: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.active_state(unit) in ("inactive", "failed"):
                return True
            time.sleep(0.05)
        return False

    def kill(self, unit: str, signal: int, who: str = "main") -> None:
        self._call(unit, lambda: self._manager("KillUnit", "ssi", unit, who, signal))

    def reset_failed(self, unit: str) -> None:
        from sdctr.systemd.bus import BusError

        try:
            self._manager("ResetFailedUnit", "s", unit)
        except BusError as e:  # not loaded or not failed: nothing to reset
            debug(f"reset-failed {unit}: {e}")

    def unit_state(self, unit: str) -> dict[str, Any]:
        """ActiveState, SubState, MainPID, ExecMainCode/Status, Result, ControlGroup; {} if not loaded."""
        path = _unit_path(unit)
        if self._bus.get(path, UNIT, "LoadState") != "loaded":
            return {}
        return {name: self._bus.get(path, interface, name) for interface, name in _STATE_PROPERTIES}

    def active_state(self, unit: str) -> str:
        """ActiveState alone, one property read ("inactive" for a unit systemd does not know)."""
        return str(self._bus.get(_unit_path(unit), UNIT, "ActiveState"))

    def main_pid(self, unit: str) -> int:
        """The unit's main process, 0 if none or gone: one property read, not unit_state()'s ten."""
        from sdctr.systemd.bus import BusError

        try:
            return int(self._bus.get(_unit_path(unit), SERVICE, "MainPID"))
        except BusError:
            return 0

    def active_states(self, pattern: str = "ctr-*.service") -> dict[str, str]:
        """One call for every container's state (ps), not one call per container."""
        units = self._manager("ListUnitsByPatterns", "asas", [], [pattern])
        return {u[0]: u[3] for u in units}

    def remove_unit_file(self, unit: str) -> None:
        path = UNIT_DIR / unit
        if path.exists():
            path.unlink()
            self._manager("Reload")

    # --- internals ---

    def _write_unit_file(self, unit: str, props: Sequence[Property]) -> None:
        UNIT_DIR.mkdir(parents=True, exist_ok=True)
        tmp = UNIT_DIR / f".{unit}.tmp"
        tmp.write_text(unit_file(props))
        tmp.rename(UNIT_DIR / unit)
        self._manager("Reload")
        self.reset_failed(unit)

    def _call(self, unit: str, call: Any) -> Any:
        from sdctr.systemd.bus import BusError

        try:
            return call()
        except BusError as e:
            if e.name == "org.freedesktop.systemd1.UnitExists":
                raise _UnitExists() from e
            if e.name == "org.freedesktop.systemd1.NoSuchUnit":
                raise SdctrError(f"{unit} is not loaded (the container is not running)") from e
            raise SdctrError(f"systemd refused the request for {unit}: {e.message}") from e

    def _run_job(self, unit: str, call: Any, expect_active: bool = True) -> None:
        if not self._watching_jobs:
            self._bus.watch(MANAGER, "JobRemoved")  # before the job exists: its end is not missed
            self._watching_jobs = True
        job = self._call(unit, call)
        result = self._wait_job(job)
        if not expect_active or result == "done":
            return  # a start job is done once the init reported READY: the container runs
        state = self.unit_state(unit)
        if _ran(state):
            return
        # the init's own verdict, as Docker reports it: 126 cannot invoke, 127 not found
        code = state.get("ExecMainStatus") if state.get("ExecMainCode") == 1 else None
        # a --rm unit is collected as it fails, its Result with it: then the job's result
        raise SdctrError(f"{unit} failed to start (result: {state.get('Result') or result})",
                         hint=journal_tail(unit), status=code if code in (126, 127) else 125)

    def _wait_job(self, job_path: str) -> str:
        """The job's result ("done", "failed", "canceled", ...) from its JobRemoved signal:
        systemd tells the client that started a job when it ends, on every version."""
        deadline = time.monotonic() + JOB_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            removed = self._bus.next_signal(MANAGER, "JobRemoved", left)  # (id, job, unit, result)
            if removed is not None and removed[1] == job_path:
                return str(removed[3])
        raise SdctrError(f"systemd did not finish job {job_path} within {JOB_TIMEOUT:.0f} s")


def _unit_path(unit: str) -> str:
    from sdctr.systemd.bus import object_path

    return object_path(f"{MANAGER_PATH}/unit", unit)


def _ran(state: dict[str, Any]) -> bool:
    """A command that exits at once leaves the unit inactive or failed: the container ran, and
    `run -d` reports it as Docker does, by its id. It did not run if the hook failed (the main
    command never started) or the init itself failed (125-127: setup, cannot invoke, not found)."""
    if not state.get("ExecMainStartTimestamp"):
        return False
    if state.get("Result") == "success":
        return True
    return state.get("Result") in ("exit-code", "signal", "oom-kill") and not (
        state.get("ExecMainCode") == 1 and 125 <= state.get("ExecMainStatus", 0) <= 127)


class _UnitExists(Exception):
    pass


def journal_tail(unit: str, lines: int = 10) -> str:
    from sdctr.external import run

    r = run(["journalctl", "--no-pager", "-q", "-n", str(lines), "-u", unit], check=False)
    text = r.stdout.strip()
    return f"its last journal lines:\n{text}" if text else f"see 'journalctl -u {unit}'"
