"""Linters are tests (mkosi's habit): ruff, mypy, and vermin for the Python 3.9 floor."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ["tests/testhost/testhost", "tests/vm/vm", "tests/mutation"]


def tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (tests/setup installs the test extras)")
    return found


def check(cmd: list[str]) -> None:
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout}\n{r.stderr}"


def test_ruff() -> None:
    scripts = [s for s in SCRIPTS if (REPO / s).exists()]
    check([tool("ruff"), "check", "sdctr", "tests", "bench", *scripts])


def test_mypy() -> None:
    check([tool("mypy"), "sdctr"])


def test_python_39_is_enough() -> None:
    # vermin reads the code for features newer than the floor; ruff's target-version does the rest
    check([tool("vermin"), "--no-tips", "--violations", "--eval-annotations", "-t=3.9-", "sdctr"])
