"""sdctr/stop.sh, every container's ExecStop: SIGTERM to $MAINPID, then wait until it is gone or
a zombie (its reaper, systemd, may not have collected it yet)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from typing import Any

import pytest
from helpers import require_exec

from sdctr.paths import STOP_SCRIPT

pytestmark = pytest.mark.unit


def stop(mainpid: int | None, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if mainpid is not None:
        env["MAINPID"] = str(mainpid)
    return subprocess.run(["/bin/sh", STOP_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_without_a_main_process_there_is_nothing_to_stop() -> None:
    assert stop(None).returncode == 0


def test_sigterm_reaches_the_main_process_and_its_zombie_ends_the_wait(tmp_path: object) -> None:
    # a command name with a space and a parenthesis, as /proc/PID/stat shows it
    require_exec(tmp_path)  # type: ignore[arg-type]
    odd = os.path.join(str(tmp_path), "a) b")
    shutil.copy(sys.executable, odd)
    child = subprocess.Popen([odd, "-c", "import time; time.sleep(60)"])
    try:
        r = stop(child.pid)  # the child stays a zombie: we reap it only afterwards
        assert (r.returncode, r.stderr) == (0, "")
        assert child.wait(timeout=5) == -15
    finally:
        child.kill()
        child.wait()


def test_a_main_process_that_ignores_sigterm_is_waited_for_until_it_dies() -> None:
    """The wait lasts while the process lives (systemd's stop timeout ends it then) and ends within
    moments of its death, not on a timer of its own."""
    child = subprocess.Popen([sys.executable, "-c", "import signal, sys, time; "
                              "signal.signal(signal.SIGTERM, lambda *_: print('got TERM', flush=True)); "
                              "print('ready', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"  # its handler is set
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MAINPID": str(child.pid)}
    waiter = subprocess.Popen(["/bin/sh", STOP_SCRIPT], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "got TERM\n"  # the script's SIGTERM arrived
        time.sleep(1)
        assert waiter.poll() is None, "stop.sh gave up on a live main process"
        child.kill()  # it dies: a zombie until we reap it, as the container's PID 1 is for systemd
        # within moments, not on a timer of its own (it looks every 50 ms); the bound is loose
        # only so that a loaded machine cannot fail it
        assert waiter.wait(timeout=10) == 0
        assert waiter.stderr is not None and waiter.stderr.read() == ""
    finally:
        for proc in (waiter, child):
            proc.kill()
            proc.wait()


def test_a_process_already_gone_is_no_error() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert stop(child.pid).returncode == 0


def test_the_grace_period_ends_in_sigkill_to_the_main_process_alone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                              "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); "
                              "time.sleep(60)"], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        child.stdout.readline()
        env = {"MAINPID": str(child.pid), "PATH": "/usr/bin:/bin"}
        r = subprocess.run(["/bin/sh", STOP_SCRIPT, "0"], env=env, timeout=5, capture_output=True, text=True)
        assert (r.returncode, r.stderr) == (0, "")
        assert child.wait(timeout=5) == -9
    finally:
        child.kill()
        child.wait()


class _Unit:
    """What systemd does with one running container, through the manager's own stop path: the
    main process goes at SIGTERM or SIGKILL, the hooks then run (deactivating) until the stop job."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.main = 42


def _systemd(unit: _Unit) -> Any:
    from sdctr.systemd.manager import Systemd

    class Fake(Systemd):
        def __init__(self) -> None:
            self._watching_jobs = True

        def _manager(self, method: str, signature: str = "", *args: Any) -> Any:
            unit.calls.append((method, *args))
            if method == "KillUnit" and args[2] in (9, 15) and args[1] in ("main", "all"):
                unit.main = 0
            return "/job/1"

        def reset_failed(self, name: str) -> None:
            unit.calls.append(("ResetFailedUnit", name))

        def _run_job(self, name: str, call: Any, expect_active: bool = True) -> None:
            call()

        def active_state(self, name: str) -> str:
            return "active" if unit.main else "deactivating"  # the poststop hook runs

        def unit_state(self, name: str) -> dict[str, Any]:
            return {"ActiveState": self.active_state(name), "MainPID": unit.main}

    return Fake()


@pytest.mark.parametrize("grace", [0, 0.2])
def test_stop_with_a_grace_never_kills_the_whole_unit(grace: float) -> None:
    """`sdctr stop -t 0` must not SIGKILL the unit's hooks: only the container's PID 1."""
    from sdctr.runtime import lifecycle
    from sdctr.spec import ContainerSpec

    unit = _Unit()
    spec = ContainerSpec(id="c" * 64, name="web", image="busybox", image_id="0" * 64, command=("sh",))
    lifecycle.stop(_systemd(unit), spec, grace)
    assert not [c for c in unit.calls if c[0] == "KillUnit" and c[2] == "all"], unit.calls
    # the stop job last; not failed on request is SuccessExitStatus's work (143, 137), not a reset
    # that would hide a unit that failed for a cause of its own (the fault campaign's stop faults)
    assert unit.calls[-1][0] == "StopUnit" and ("ResetFailedUnit", spec.unit) not in unit.calls
