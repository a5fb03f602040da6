"""Test tiers (see DESIGN.md): unit (anywhere), host (root here), testhost (real systemd), vm (qemu).

A tier whose prerequisites are missing is skipped with the reason, except under
SDCTR_TESTS_STRICT=1 (CI sets it), where a missing prerequisite fails the run: CI must never go
green by skipping the real thing.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator

import pytest
from helpers import skip_or_fail, strict
from helpers.testhost import Machine, boot_testhost, remove_testhost


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


def tiers_of(item: pytest.Item) -> list[str]:
    """The tier markers on a test (its own, its class's or its module's pytestmark)."""
    return [t for t in TIERS if item.get_closest_marker(t) is not None]


# pytest-timeout: a hang fails with the test's name. pyproject's `timeout` serves the unit and host
# tiers; a test host boots in minutes (a trixie one in a test of its own), and the VM fixture may
# build its image (tests/vm/vm allows an hour for that), so those tiers get their own. A test that
# knows better carries @pytest.mark.timeout(N), which wins.
TIER_TIMEOUT = {"testhost": 1200, "vm": 3600}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:  # an unmarked test is a unit test
        tiers = tiers_of(item)
        if not tiers:
            item.add_marker(pytest.mark.unit)
        for tier in tiers:
            if tier in TIER_TIMEOUT and item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(TIER_TIMEOUT[tier]))


def pytest_runtest_setup(item: pytest.Item) -> None:
    for tier in tiers_of(item):
        reason = _missing(tier)
        if reason:
            skip_or_fail(reason)


# What the machine's environment must not steer: a proxy would send the tests' registry traffic
# (all of it inside namespaces the tests made) elsewhere, an auth file would log them in.
FOREIGN_ENV = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
               "ALL_PROXY", "NO_PROXY", "REGISTRY_AUTH_FILE", "DOCKER_CONFIG")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test starts without the machine's proxies or auth file, and with an sdctr.yaml that
    does not exist (not /etc/sdctr's), in this process and in the children it starts; a test that
    wants one sets it."""
    for name in FOREIGN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SDCTR_CONFIG", str(tmp_path_factory.getbasetemp() / "no-sdctr.yaml"))


@pytest.fixture(scope="session")
def testhost() -> Iterator[Machine]:
    """One bookworm test host shared by the session's testhost-tier tests."""
    host = boot_testhost("bookworm", name=f"pytest{os.getpid()}")
    try:
        yield host
    finally:
        remove_testhost(host)


def pytest_report_header(config: pytest.Config) -> str:
    return f"sdctr tiers: strict={strict()} root={os.geteuid() == 0} python={sys.version.split()[0]}"
