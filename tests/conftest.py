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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:  # an unmarked test is a unit test
        if not tiers_of(item):
            item.add_marker(pytest.mark.unit)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for tier in tiers_of(item):
        reason = _missing(tier)
        if reason:
            skip_or_fail(reason)


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
