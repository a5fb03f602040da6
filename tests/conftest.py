"""Test tiers (see DESIGN.md): unit (anywhere), host (root here), testhost (real systemd), vm (qemu).

A tier whose prerequisites are missing is skipped with the reason, except under
SDCTR_TESTS_STRICT=1 (CI sets it), where a missing prerequisite fails the run: CI must never go
green by skipping the real thing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTHOST = REPO / "tests/testhost/testhost"
STRICT = os.environ.get("SDCTR_TESTS_STRICT") == "1"


def _missing(marker: str) -> str | None:
    if marker == "unit":
        return None
    if os.geteuid() != 0:
        return f"{marker} tier needs root"
    needs = {"host": ["unshare", "ip"], "testhost": ["unshare", "nsenter", "debootstrap"],
             "vm": ["qemu-system-x86_64", "debootstrap"]}
    for tool in needs.get(marker, []):
        if shutil.which(tool) is None:
            return f"{marker} tier needs {tool} (tests/setup installs it)"
    return None


TIERS = ("unit", "host", "testhost", "vm")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:  # an unmarked test is a unit test
        if not any(item.iter_markers(name=t) for t in TIERS):
            item.add_marker(pytest.mark.unit)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for tier in TIERS:
        reason = _missing(tier) if any(item.iter_markers(name=tier)) else None
        if reason and STRICT:
            pytest.fail(f"SDCTR_TESTS_STRICT=1: {reason}")
        elif reason:
            pytest.skip(reason)


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


@pytest.fixture(scope="session")
def testhost() -> Iterator[Machine]:
    """One bookworm test host shared by the session's testhost-tier tests."""
    host = boot_testhost("bookworm", name=f"pytest{os.getpid()}")
    try:
        yield host
    finally:
        remove_testhost(host)


def pytest_report_header(config: pytest.Config) -> str:
    return f"sdctr tiers: strict={STRICT} root={os.geteuid() == 0} python={sys.version.split()[0]}"
