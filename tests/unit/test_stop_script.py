"""sdctr/stop.sh, every container's ExecStop: SIGTERM to $MAINPID, then wait until it is gone or
a zombie (its reaper, systemd, may not have collected it yet)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

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
        started = time.monotonic()
        assert waiter.wait(timeout=5) == 0
        assert time.monotonic() - started < 1, "stop.sh noticed the death late"
        assert waiter.stderr is not None and waiter.stderr.read() == ""
    finally:
        for proc in (waiter, child):
            proc.kill()
            proc.wait()


def test_a_process_already_gone_is_no_error() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert stop(child.pid).returncode == 0
