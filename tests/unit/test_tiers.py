"""The tiers themselves (tests/conftest.py): the markers partition the suite, each tier's
prerequisites are checked for its own tests only, and a run lists every skip with its reason."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from helpers import REPO

pytestmark = pytest.mark.unit


@pytest.fixture
def conftest(pytestconfig: pytest.Config) -> ModuleType:
    """tests/conftest.py as pytest loaded it (`import conftest` may give tests/host/conftest.py:
    every conftest module is named so)."""
    top = str(REPO / "tests/conftest.py")
    [module] = [p for p in pytestconfig.pluginmanager.get_plugins() if getattr(p, "__file__", None) == top]
    return module  # type: ignore[no-any-return]


def collected(*args: str) -> list[str]:
    """The node ids `pytest --collect-only -q ARGS` lists for the whole suite, as CI would."""
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
                        *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 5), r.stdout + r.stderr  # 5: nothing selected
    return [line for line in r.stdout.splitlines() if "::" in line]


@pytest.mark.timeout(600)
def test_the_tier_markers_partition_the_suite(conftest: ModuleType) -> None:
    everything = collected()
    assert everything, "nothing collected"
    assert len(everything) == len(set(everything))
    by_tier = {tier: collected("-m", tier) for tier in conftest.TIERS}
    assert all(by_tier.values()), {t: len(ids) for t, ids in by_tier.items()}
    counts = Counter(node for ids in by_tier.values() for node in ids)
    twice = sorted(node for node, n in counts.items() if n > 1)
    assert twice == [], f"{len(twice)} tests in more than one tier, as {twice[:5]}"
    none = sorted(set(everything) - set(counts))
    assert none == [], f"{len(none)} tests in no tier, as {none[:5]}"
    assert sorted(counts) == sorted(everything)
    # the linters are unit tests too: unmarked, so the conftest marks them
    assert any("test_linters.py::" in node for node in by_tier["unit"])


def pytest_with_our_config(where: Path, test_file: str) -> subprocess.CompletedProcess[str]:
    """pytest over one file of `where`, with this project's pytest configuration (pyproject)."""
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "-c", str(REPO / "pyproject.toml"), "--rootdir", str(where), test_file],
                          cwd=where, capture_output=True, text=True, timeout=120)


class Stub:
    """A test item as conftest's hooks see it: its markers, nothing more."""

    def __init__(self, *markers: str):
        self.markers = set(markers)

    def get_closest_marker(self, name: str) -> object:
        return name if name in self.markers else None


def test_a_tiers_prerequisites_are_checked_for_its_tests_only(monkeypatch: pytest.MonkeyPatch,
                                                             conftest: ModuleType) -> None:
    asked: list[str] = []

    def missing(tier: str) -> str | None:
        asked.append(tier)
        return None if tier == "unit" else f"{tier} needs a thing this test withholds"

    monkeypatch.setattr(conftest, "_missing", missing)
    conftest.pytest_runtest_setup(Stub("unit"))  # type: ignore[arg-type]  # nothing missing for it
    assert asked == ["unit"]
    asked.clear()
    for tier in ("host", "testhost", "vm"):
        with pytest.raises((pytest.skip.Exception, pytest.fail.Exception), match=f"{tier} needs a thing"):
            conftest.pytest_runtest_setup(Stub(tier))  # type: ignore[arg-type]
    assert asked == ["host", "testhost", "vm"]


def test_a_run_lists_every_skip_with_its_reason(tmp_path: Path) -> None:
    """pyproject's addopts carry -ra, so CI's log says what did not run and why."""
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\n"
        "def test_skipped():\n    pytest.skip('no frobnicator on this machine')\n\n"
        "def test_passes():\n    pass\n")
    r = pytest_with_our_config(tmp_path, "test_skips.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "short test summary info" in r.stdout, r.stdout
    assert "SKIPPED [1] test_skips.py:4: no frobnicator on this machine" in r.stdout, r.stdout


def test_a_hang_fails_with_the_tests_name(tmp_path: Path) -> None:
    """pytest-timeout is on (pyproject's `timeout`): a test that hangs fails by name."""
    (tmp_path / "test_hang.py").write_text(
        "import time\nimport pytest\n\n"
        "@pytest.mark.timeout(1)\ndef test_hangs():\n    time.sleep(60)\n")
    r = pytest_with_our_config(tmp_path, "test_hang.py")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED test_hang.py::test_hangs - Failed: Timeout" in r.stdout, r.stdout


def test_a_thread_that_dies_fails_its_test(tmp_path: Path) -> None:
    """pyproject's filterwarnings turn pytest's unhandled-thread-exception warning into a failure."""
    (tmp_path / "test_thread.py").write_text(
        "import threading\n\n"
        "def test_thread_dies():\n"
        "    def boom():\n        raise RuntimeError('the worker broke')\n"
        "    t = threading.Thread(target=boom)\n    t.start()\n    t.join()\n")
    r = pytest_with_our_config(tmp_path, "test_thread.py")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the worker broke" in r.stdout, r.stdout

