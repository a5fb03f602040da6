"""sdctr/stop.sh, every container's ExecStop: SIGTERM to $MAINPID, then wait until it is gone or
a zombie (its reaper, systemd, may not have collected it yet)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

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


def test_a_main_process_that_ignores_sigterm_is_waited_for() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                              "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); "
                              "time.sleep(60)"], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        child.stdout.readline()  # its handler is set
        with pytest.raises(subprocess.TimeoutExpired):  # systemd's stop timeout ends this wait
            stop(child.pid, timeout=1)
    finally:
        child.kill()
        child.wait()


def test_a_process_already_gone_is_no_error() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert stop(child.pid).returncode == 0
