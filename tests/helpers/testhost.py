"""A handle on a test host (tests/testhost/testhost): a real systemd booted as PID 1 in namespaces
of its own. conftest.py's `testhost` fixture shares one per session; a test that needs a host of
its own boots it with boot_testhost and removes it with remove_testhost."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from . import REPO

TESTHOST = REPO / "tests/testhost/testhost"
HOSTS = Path("/var/lib/sdctr-testhost")  # the harness's per-host directories, state.json in each


def wait_for(predicate, timeout: float = 20, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Until predicate() is true (journald and systemd do things a moment later); its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Machine:
    """A handle on one booted test host (tests/testhost/testhost)."""

    def __init__(self, name: str):
        self.name = name

    def exec(self, *cmd: str, check: bool = True, input: str | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([str(TESTHOST), "exec", self.name, "--", *cmd], input=input, text=True,
                           capture_output=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd} exited {r.returncode} in {self.name}\n"
                                 f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r

    def sh(self, script: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.exec("sh", "-c", script, **kw)  # type: ignore[arg-type]

    def cp(self, src: str | Path, dst: str) -> None:
        subprocess.run([str(TESTHOST), "cp", str(src), f"{self.name}:{dst}"], check=True)

    def reboot(self) -> None:
        subprocess.run([str(TESTHOST), "reboot", self.name], check=True, capture_output=True, text=True)

    def state(self) -> dict[str, Any]:
        """The harness's record of the running host: init_pid (its systemd, as this machine sees
        it), unshare_pid, cgroup_layout ("v1" or "v2", what this machine has and so what systemd
        inside sees), ..."""
        state: dict[str, Any] = json.loads((HOSTS / self.name / "state.json").read_text())
        return state


def boot_testhost(distro: str = "bookworm", name: str | None = None) -> Machine:
    cmd = [str(TESTHOST), "up", "--distro", distro]
    if name:
        cmd += ["--name", name]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    if r.returncode != 0:
        raise AssertionError(f"testhost up failed:\n{r.stderr}")
    return Machine(r.stdout.strip())


def remove_testhost(host: Machine) -> None:
    subprocess.run([str(TESTHOST), "down", host.name], check=True, timeout=120)
