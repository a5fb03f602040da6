"""Docker's health checks, run by one helper process in the container's unit and reported to
systemd: no timer unit, no loop outside the unit.

The init forks this helper before it makes the container's PID namespace (so the helper is no
process the container can see), and it re-executes as a sealed copy of the interpreter, as
`sdctr exec` does: every check it runs enters the container through a fork of it, and a check
command `#!/proc/self/exe` must find no host binary there (CVE-2019-5736; sdctr.init.sealed).
Once the container's command runs, the init hands its PID 1 to systemd (MAINPID=) *without*
READY=1 and tells the helper that PID. The helper then checks at once, and:

- READY=1 after the first check that passes: the unit (Type=notify) turns active, so
  `systemctl start`, `sdctr run -d` and every unit ordered after it (depends_on) wait for a
  healthy container, as podman's --sdnotify=healthy;
- WATCHDOG=1 after every check that leaves the container not unhealthy; the unit's WatchdogSec
  (set for --health-on-failure kill or restart, sdctr.systemd.properties) covers one interval and
  one timeout, so a helper that hangs is acted on too. Once unhealthy it stops, and says
  WATCHDOG=trigger (systemd >= 243) so that systemd acts at once: Result=watchdog, and the
  unit's Restart= (on-failure, on-watchdog, always) restarts it;
- STATUS=healthy 3/3 (the failures it may still take of --health-retries), or
  "unhealthy: <the check's last line>", shown by `systemctl status`.

A container that turns unhealthy before any check passed becomes active all the same (READY=1)
unless its check acts on failure: Docker runs an unhealthy container on. --health-on-failure
stop stops the unit (a stop job, as `systemctl stop`: Restart= does not bring it back).

The state is /run/sdctr/<id>/health.json, as Docker's State.Health: Status (starting, healthy,
unhealthy), FailingStreak, and the last five results; `sdctr ps` and `inspect` read it, and
`sdctr healthcheck run` adds to it. Failures inside --health-start-period do not count (there
the checks come every START_INTERVAL, for a quick READY=1); --health-retries consecutive
failures make the container unhealthy; one success makes it healthy.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import time
from pathlib import Path

from sdctr import linux, log, state
from sdctr.log import SdctrError, debug
from sdctr.paths import Paths
from sdctr.spec import ContainerSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from sdctr.init.enter import Leader

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"
LOG_KEEP = 5  # Docker keeps five results
OUTPUT_KEEP = 4096  # and that much of each check's output
START_INTERVAL = 1.0  # seconds between checks inside the start period, until one passes
KILL_GRACE = 1.0  # a timed-out check: SIGTERM, then SIGKILL after this long


def state_file(paths: Paths, cid: str) -> str:
    return str(paths.run_dir(cid) / "health.json")


# --- the state, as Docker's State.Health ----------------------------------------------------------

def read(paths: Paths, cid: str) -> dict[str, Any] | None:
    """The container's State.Health, or None when it has no check or has not started one."""
    try:
        with open(state_file(paths, cid)) as f:
            found = json.load(f)
    except (OSError, ValueError):
        return None
    return {k: found[k] for k in ("Status", "FailingStreak", "Log") if k in found}


def begin(paths: Paths, cid: str, when: float) -> None:
    """At each start of the container: its state back to `starting`."""
    _write(paths, cid, {"Status": STARTING, "FailingStreak": 0, "Log": [], "Started": when})


def record(paths: Paths, spec: ContainerSpec, result: dict[str, Any], passed: bool,
           when: float) -> dict[str, Any]:
    """The state after one result, by Docker's rules, under a lock (a check by hand may race
    the helper's)."""
    import fcntl

    os.makedirs(paths.run_dir(spec.id), exist_ok=True)
    with open(state_file(paths, spec.id) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(state_file(paths, spec.id)) as f:
                now = json.load(f)
        except (OSError, ValueError):
            now = {"Status": STARTING, "FailingStreak": 0, "Log": [], "Started": when}
        now["Log"] = [*now.get("Log", []), result][-LOG_KEEP:]
        if passed:
            now["Status"], now["FailingStreak"] = HEALTHY, 0
        elif when - now.get("Started", 0) >= spec.health_start_period or now["Status"] == HEALTHY:
            now["FailingStreak"] = now.get("FailingStreak", 0) + 1
            if now["FailingStreak"] >= spec.health_retries:
                now["Status"] = UNHEALTHY
        _write(paths, spec.id, now)
    return now  # type: ignore[no-any-return]


def result_of(started: float, code: int, output: str) -> dict[str, Any]:
    return {"Start": _iso(started), "End": _iso(time.time()), "ExitCode": code,
            "Output": output[:OUTPUT_KEEP]}


def status_text(spec: ContainerSpec, now: dict[str, Any]) -> str:
    """systemd's STATUS=: `healthy 3/3`, the failures it may still take of its retries; or why
    it is unhealthy, in the check's last line of output."""
    if now["Status"] == UNHEALTHY:
        last = now["Log"][-1] if now.get("Log") else {}
        lines = str(last.get("Output", "")).strip().splitlines()
        return f"unhealthy: {lines[-1] if lines else 'exit status ' + str(last.get('ExitCode'))}"
    left = spec.health_retries - now.get("FailingStreak", 0)
    return f"{now['Status']} {left}/{spec.health_retries}"


def _write(paths: Paths, cid: str, now: dict[str, Any]) -> None:
    path = state_file(paths, cid)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(now, f)
    os.replace(tmp, path)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


# --- the helper -----------------------------------------------------------------------------------

def helper(argv: list[str]) -> NoReturn:
    """`ROOT RUN ID PIPE [--debug]`, in the sealed copy the init forked and ran
    (sdctr.init.standard.health_helper)."""
    root, run, cid, pipe, *flags = argv
    log.set_debug("--debug" in flags)
    status = 0
    try:
        # before anything of the container's is open; its checks inherit it until their exec
        linux.prctl(linux.PR_SET_DUMPABLE, 0)
        with open(int(pipe), "rb") as f:
            said = f.read().strip()
        if said.isdigit():
            Checker(Paths(Path(root), Path(run)), state.find_by_id(Paths(Path(root), Path(run)), cid),
                    int(said)).run()
    except (SdctrError, OSError) as e:
        status = log.report(e)
    os._exit(status)


class Checker:
    def __init__(self, paths: Paths, spec: ContainerSpec, pid: int):
        # everything a check needs, imported now: past setns its root is the container's
        from sdctr.init import enter, reaper, seccomp, standard  # noqa: F401

        self.paths, self.spec = paths, spec
        pidfd = None
        try:
            pidfd = linux.pidfd_open(pid)
        except OSError as e:
            if e.errno != errno.ENOSYS:  # a kernel before 5.3: the PID and its start time then
                raise
        self.leader: Leader = enter.Leader(pid, pidfd, enter._starttime(pid))
        # libseccomp is loaded from the host, once; --privileged has no filter, as its container
        self.syscall_filter = None if spec.privileged else seccomp.Filter(spec.capabilities)
        self.request = {"command": list(spec.health_cmd), "env": [], "workdir": None, "user": None,
                        "tty": False, "interactive": False, "cgroup": None}

    def run(self) -> None:
        spec, started = self.spec, time.time()
        begin(self.paths, spec.id, started)
        ready = spec.sdnotify != "conmon"  # READY=1 is the container's, or the init's already
        triggered = False
        while True:
            t0 = time.time()
            code, output = self.check()
            now = record(self.paths, spec, result_of(t0, code, output), code == 0, t0)
            messages = [f"STATUS={status_text(spec, now)}"]
            if now["Status"] != UNHEALTHY:
                messages.append("WATCHDOG=1")
                if now["Status"] == HEALTHY and not ready:
                    messages.insert(0, "READY=1")
                    ready = True
            else:
                debug(f"health check of {spec.name}: unhealthy, {output.strip()!r}")
                if spec.health_on_failure in ("kill", "restart") and not triggered:
                    messages.append("WATCHDOG=trigger")  # once: each one starts systemd's stop over
                    triggered = True
                elif not ready:  # Docker's: an unhealthy container runs on
                    messages.insert(0, "READY=1")
                    ready = True
            notify("\n".join(messages))
            if now["Status"] == UNHEALTHY and spec.health_on_failure == "stop":
                from sdctr.external import run

                run(["systemctl", "stop", "--no-block", spec.unit], check=False)
            in_start = not ready and time.time() - started < spec.health_start_period
            interval = min(spec.health_interval, START_INTERVAL) if in_start else spec.health_interval
            if not self.sleep(interval):
                return  # the container's PID 1 exited

    def sleep(self, seconds: float) -> bool:
        """False once the container's PID 1 has exited."""
        from sdctr.init import enter

        if self.leader.pidfd is not None:
            return not select.select([self.leader.pidfd], [], [], seconds)[0]
        time.sleep(seconds)
        return enter._starttime(self.leader.pid) == self.leader.starttime

    def check(self) -> tuple[int, str]:
        """The command run in the container as `sdctr exec` runs one, killed after the timeout:
        its exit status (-1: timed out) and output."""
        from sdctr.init import enter

        r, w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            status = log.EXIT_SDCTR
            try:
                null = os.open("/dev/null", os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(w, 1)
                os.dup2(w, 2)
                status = enter.run_entered(self.request, self.spec, self.leader, self.syscall_filter)
            except BaseException as e:  # whatever it is, the check failed: say why
                os.write(2, f"sdctr: error: {e}\n".encode())
            os._exit(status)
        os.close(w)
        output, waited = self._collect(r, pid, time.monotonic() + self.spec.health_timeout)
        os.close(r)
        if waited is None:
            timeout = f"Health check exceeded timeout ({self.spec.health_timeout:g}s)\n"
            return -1, timeout + output
        return os.waitstatus_to_exitcode(waited), output

    def _collect(self, r: int, pid: int, deadline: float) -> tuple[str, int | None]:
        """The check's output until it exits (not until a process it left behind closes the
        pipe), or until the deadline: then it is killed, and the status is None."""
        chunks: list[bytes] = []
        status, reading = None, True
        while True:
            if status is None:
                done, wait_status = os.waitpid(pid, os.WNOHANG)
                status = wait_status if done else None
            wait = 0.02 if status is not None else max(0.0, min(0.1, deadline - time.monotonic()))
            if reading and select.select([r], [], [], wait)[0]:
                data = os.read(r, 65536)
                if data:
                    if sum(map(len, chunks)) < OUTPUT_KEEP:
                        chunks.append(data)
                    continue
                reading = False  # end of file: what is left is its exit
            elif not reading and status is None:
                time.sleep(wait)
            if status is not None:
                return b"".join(chunks).decode(errors="replace"), status
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGTERM)  # forwarded to the command by the entered helper
                time.sleep(KILL_GRACE)
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                return b"".join(chunks).decode(errors="replace"), None


def notify(message: str) -> None:
    from sdctr.init.standard import sd_notify

    try:
        sd_notify(message)
    except SdctrError as e:
        log.report(e)
