"""Docker's health checks, run as podman runs them: no daemon and no loop of ours, but a
transient timer per container over D-Bus.

As the container starts, its unit's `ExecStartPost=-sdctr hook health ID` starts
`ctr-<id>-health.timer` with its service (one StartTransientUnit call, not waited for: the
container's own start job is still running). The timer is `BindsTo=` the container's unit, so
systemd stops it, and collects both transient units, whenever the container stops; every start
(systemctl restart, Restart=, a declared container at boot) makes it again. The service runs
`sdctr healthcheck run ID` every --health-interval after the last check ended
(OnUnitInactiveSec, podman's choice: a slow check never overlaps the next).

A check is the command run in the container (`sdctr exec`), killed after --health-timeout. The
state is /run/sdctr/<id>/health.json, as Docker's State.Health: Status (starting, healthy,
unhealthy), FailingStreak, and the last five results. Failures inside --health-start-period do
not count; --health-retries consecutive failures make the container unhealthy; one success
makes it healthy.
"""

from __future__ import annotations

import json
import os
import time

from sdctr.log import SdctrError, debug
from sdctr.paths import Paths
from sdctr.spec import ContainerSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from sdctr.systemd.properties import Property

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"
LOG_KEEP = 5  # Docker keeps five results
OUTPUT_KEEP = 4096  # and that much of each check's output
ACCURACY_USEC = 1_000_000  # a timer's default accuracy is a minute


def timer_unit(spec: ContainerSpec) -> str:
    return f"{spec.unit[:-len('.service')]}-health.timer"


def check_unit(spec: ContainerSpec) -> str:
    return f"{spec.unit[:-len('.service')]}-health.service"


def state_file(paths: Paths, cid: str) -> str:
    return str(paths.run_dir(cid) / "health.json")


def timer_properties(spec: ContainerSpec, sdctr: Sequence[str]) -> tuple[list[Property], list[Property]]:
    """The timer's properties and its service's: pure, as properties() is."""
    interval = int(spec.health_interval * 1_000_000)
    argv = [*sdctr, "healthcheck", "run", spec.id]
    timer: list[Property] = [
        ("Description", "s", f"sdctr health check of {spec.name}"),
        ("BindsTo", "as", [spec.unit]),  # stopped (and collected) whenever the container stops
        ("After", "as", [spec.unit]),
        ("OnActiveSec", "t", interval),  # in µs, whatever the name says (systemd-run sends these)
        ("OnUnitInactiveSec", "t", interval),
        ("AccuracyUSec", "t", ACCURACY_USEC),
    ]
    service: list[Property] = [
        ("Description", "s", f"sdctr health check of {spec.name}"),
        ("Type", "s", "oneshot"),
        # an unhealthy container is not a failed unit of ours (`sdctr healthcheck run` exits 1, as
        # podman's): its exit status is ignored, as ExecStart=- does (seen: each failed check left
        # ctr-<id>-health.service failed, and the host degraded)
        ("ExecStart", "a(sasb)", [(argv[0], argv, True)]),
        ("Slice", "s", "sdctr.slice"),
        ("SyslogIdentifier", "s", f"{spec.name}-health"),
    ]
    return timer, service


def start_timer(paths: Paths, spec: ContainerSpec, sdctr: Sequence[str]) -> None:
    """At each start of the container: its state back to `starting`, its timer (re)started."""
    from sdctr.systemd.manager import Systemd

    _write(paths, spec.id, {"Status": STARTING, "FailingStreak": 0, "Log": [], "Started": time.time()})
    timer, service = timer_properties(spec, sdctr)
    Systemd().start_transient_nowait(timer_unit(spec), timer, [(check_unit(spec), service)])


def read(paths: Paths, cid: str) -> dict[str, Any] | None:
    """The container's State.Health, or None when it has no check or has not started one."""
    try:
        with open(state_file(paths, cid)) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    return {k: state[k] for k in ("Status", "FailingStreak", "Log") if k in state}


def run_check(paths: Paths, spec: ContainerSpec, sdctr: Sequence[str]) -> str:
    """One check: the command in the container, its result recorded; the status after it."""
    import subprocess

    if not spec.health_cmd:
        raise SdctrError(f"container {spec.name} has no health check",
                         hint="give one with --health-cmd, or healthcheck: in its YAML file")
    started = time.time()
    cmd = [*sdctr, "exec", spec.id, *spec.health_cmd]
    debug("+ " + " ".join(cmd))
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=spec.health_timeout)
        code, output = proc.returncode, proc.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        code = -1
        output = f"Health check exceeded timeout ({spec.health_timeout:g}s)\n" + \
            (e.output or b"").decode(errors="replace")
    result = {"Start": _iso(started), "End": _iso(time.time()), "ExitCode": code,
              "Output": output[:OUTPUT_KEEP]}
    status = record(paths, spec, result, code == 0, started)
    if status == UNHEALTHY and spec.health_on_failure != "none":
        act(spec)
    return status


def act(spec: ContainerSpec) -> None:
    """--health-on-failure, as podman's: the unit restarted or stopped (a job not waited for: its
    stop ends this check's timer), or its processes killed (then its Restart= decides)."""
    from sdctr.systemd.manager import Systemd

    sd = Systemd()
    if spec.health_on_failure == "kill":
        sd.kill(spec.unit, 9, who="all")
    else:
        sd.enqueue({"restart": "RestartUnit", "stop": "StopUnit"}[spec.health_on_failure], spec.unit)


def record(paths: Paths, spec: ContainerSpec, result: dict[str, Any], passed: bool, when: float) -> str:
    """The state after one result, by Docker's rules, under a lock (a check by hand may race
    the timer's)."""
    import fcntl

    os.makedirs(paths.run_dir(spec.id), exist_ok=True)
    with open(state_file(paths, spec.id) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(state_file(paths, spec.id)) as f:
                state = json.load(f)
        except (OSError, ValueError):
            state = {"Status": STARTING, "FailingStreak": 0, "Log": [], "Started": when}
        state["Log"] = [*state.get("Log", []), result][-LOG_KEEP:]
        if passed:
            state["Status"], state["FailingStreak"] = HEALTHY, 0
        elif when - state.get("Started", 0) >= spec.health_start_period or state["Status"] == HEALTHY:
            state["FailingStreak"] = state.get("FailingStreak", 0) + 1
            if state["FailingStreak"] >= spec.health_retries:
                state["Status"] = UNHEALTHY
        _write(paths, spec.id, state)
    return str(state["Status"])


def _write(paths: Paths, cid: str, state: dict[str, Any]) -> None:
    path = state_file(paths, cid)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"
