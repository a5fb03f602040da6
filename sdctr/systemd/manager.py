"""The only module that talks to systemd: a thin layer over sd-bus (systemd.bus) that starts a
transient unit as a job and waits for it, stops, kills and queries. On a systemd too old to accept
ExecStartPre/ExecStopPost on transient services (RHEL7's 219), the same properties are written as a
unit file under /run/systemd/system.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from sdctr.log import SdctrError, debug
from sdctr.systemd.properties import Host, Property, cgroup_version, unit_file

TYPE_CHECKING = False  # typing costs ~3 ms to import, and run needs none of it
if TYPE_CHECKING:
    from typing import Any

UNIT_DIR = Path("/run/systemd/system")
# where SetUnitProperties keeps a persistent change (`sdctr update` of a declared container, as
# `systemctl set-property`: 50-<Property>.conf in <dir>/<unit>.d/), and a runtime one
CONTROL_DIRS = (Path("/etc/systemd/system.control"), Path("/run/systemd/system.control"))
JOB_TIMEOUT = 90.0


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

    def enqueue_transient(self, unit: str, props: Sequence[Property]) -> None:
        """Start the unit as a job and return: for a helper ordered after a job still running
        (its After=), which waiting for would deadlock."""
        self._call(unit, lambda: self._manager("StartTransientUnit", "ssa(sv)a(sa(sv))", unit, "fail",
                                               [(name, (sig, value)) for name, sig, value in props], []))

    def set_properties(self, unit: str, props: Sequence[Property], runtime: bool = True) -> None:
        """SetUnitProperties: a loaded unit's properties changed now (a cgroup limit written at
        once); `runtime`: until the unit is unloaded or the host reboots (systemctl --runtime)."""
        self._call(unit, lambda: self._manager("SetUnitProperties", "sba(sv)", unit, runtime,
                                               [(name, (sig, value)) for name, sig, value in props]))

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
        from sdctr.systemd.bus import BusError

        try:
            self._run_job(unit, lambda: self._manager("StopUnit", "ss", unit, "replace"),
                          expect_active=False)
        except SdctrError as e:
            # a transient unit that ended cleanly (SuccessExitStatus) is collected at once:
            # stopped already, as asked
            cause = e.__cause__
            if not (isinstance(cause, BusError) and cause.name == "org.freedesktop.systemd1.NoSuchUnit"):
                raise

    def hold(self, unit: str) -> Systemd | None:
        """A connection over the system bus that keeps `unit` loaded after it stopped (RefUnit,
        systemd >= 236), for as long as the connection lasts: its exit status stays readable
        where CollectMode would collect it at once. systemd's own socket has no sender to
        track, hence the bus. None where none can be had."""
        try:
            held = Systemd(direct=False)
            held._manager("RefUnit", "s", unit)
        except Exception as e:  # no bus daemon, an old systemd, a unit gone already
            debug(f"cannot hold {unit}: {e}")
            return None
        return held

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

    def freeze(self, unit: str) -> None:
        """FreezeUnit (systemd >= 246, cgroup v2): systemd answers once the cgroup is frozen."""
        self._call(unit, lambda: self._manager("FreezeUnit", "s", unit))

    def thaw(self, unit: str) -> None:
        self._call(unit, lambda: self._manager("ThawUnit", "s", unit))

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

    def restarts(self, unit: str) -> int:
        """How often systemd restarted the unit (NRestarts, v235 on; 0 before, or if not loaded)."""
        from sdctr.systemd.bus import BusError

        try:
            return int(self._bus.get(_unit_path(unit), SERVICE, "NRestarts"))
        except BusError:
            return 0

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

    def idle(self, unit: str) -> bool:
        """Whether nothing runs the unit or is about to: stopped (inactive, failed, or not loaded
        at all) with no job queued (ListUnits' job id). One call."""
        units = self._manager("ListUnitsByPatterns", "asas", [], [unit])
        return all(u[3] in ("inactive", "failed") and not u[7] for u in units)

    def remove_unit_file(self, unit: str) -> None:
        path = UNIT_DIR / unit
        if path.exists():
            path.unlink()
            self._manager("Reload")

    def remove_control_drop_ins(self, unit: str) -> list[str]:
        """The drop-ins SetUnitProperties left for `unit` (`sdctr update`'s, `systemctl
        set-property`'s) removed, and systemd reloaded if there were any: a container declared
        again under the name must not inherit its predecessor's limits. Not `systemctl revert`:
        that would also take the administrator's own `systemctl edit` drop-ins. The directories
        removed."""
        import shutil

        removed = [str(d / f"{unit}.d") for d in CONTROL_DIRS if (d / f"{unit}.d").is_dir()]
        for directory in removed:
            shutil.rmtree(directory)
        if removed:
            self._manager("Reload")
        return removed

    def write_control_drop_in(self, unit: str, name: str, lines: Sequence[str]) -> None:
        """A persistent [Service] drop-in where SetUnitProperties keeps its own (50-NAME.conf in
        /etc/systemd/system.control/UNIT.d/), for what systemd cannot take over the bus for a
        loaded unit (cgroup v1's CPUAffinity, an ExecStartPre), then systemd reloaded: the next
        start has it, `systemctl revert` removes it as it removes set-property's."""
        directory = CONTROL_DIRS[0] / f"{unit}.d"
        directory.mkdir(parents=True, exist_ok=True)
        text = "# sdctr update (as systemctl set-property)\n[Service]\n" + "".join(f"{ln}\n" for ln in lines)
        (directory / f"50-{name}.conf").write_text(text)
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
        said = init_said(unit, wait=code is not None) if code is None or 125 <= code <= 127 else None
        if said:
            from sdctr.log import InitFailed

            raise InitFailed(said, hint=f"{unit} failed to start: more in 'journalctl -u {unit}'",
                             status=code if code in (126, 127) else 125)
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


def init_said(unit: str, wait: bool = False) -> str | None:
    """The error line the container's init wrote in this start (after systemd's last `Starting`
    line for the unit), without its `sdctr: error: `; None if the journal has none. `wait`: the
    init exited 125-127, so it wrote one, but journald reads the unit's stream on its own time and
    may not have it yet when the job's end reaches us (seen once in CI): asked again for up to 1 s."""
    from sdctr.external import run

    prefix = "sdctr: error: "
    for attempt in range(10 if wait else 1):
        if attempt:
            time.sleep(0.1)
        r = run(["journalctl", "--no-pager", "-q", "-o", "cat", "-n", "30", "-u", unit], check=False)
        lines = r.stdout.splitlines()
        started = max((i for i, line in enumerate(lines) if line.startswith("Starting ")), default=-1)
        said = [line[len(prefix):] for line in lines[started + 1:] if line.startswith(prefix)]
        if said:
            return said[-1]
    return None


def journal_tail(unit: str, lines: int = 10) -> str:
    from sdctr.external import run

    r = run(["journalctl", "--no-pager", "-q", "-n", str(lines), "-u", unit], check=False)
    text = r.stdout.strip()
    return f"its last journal lines:\n{text}" if text else f"see 'journalctl -u {unit}'"
