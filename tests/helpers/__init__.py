"""What the test tiers and the benchmarks share, one implementation each.

pyproject.toml's pytest ``pythonpath`` puts tests/ on sys.path, so a test imports these as
``helpers.<module>`` however pytest was started; a script under bench/ puts tests/ there itself.

- ``rootfs``: the busybox root file system: busybox-rootfs.sh, run on this machine, in a test host
  or in a VM
- ``layout``: OCI image layouts written by hand (the input of pushes and archives)
- ``registries``: Debian's docker-registry in a network namespace, filled by skopeo
- ``cli``: sdctr's command line as a test on this machine runs it
- ``store``: sdctr's image store as the unit tests fill and read it
- ``testhost``: a handle on a test host booted by tests/testhost/testhost
- ``docker``: what Docker documents (its default capabilities), to compare sdctr with
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NoReturn

REPO = Path(__file__).resolve().parents[2]


def checkout_version() -> str:
    """This checkout's version, read from its source (not from whatever sdctr is installed)."""
    match = re.search(r'__version__ = "([^"]+)"', (REPO / "sdctr/__init__.py").read_text())
    assert match, "sdctr/__init__.py has no __version__"
    return match.group(1)


def strict() -> bool:
    """SDCTR_TESTS_STRICT=1 (CI): a missing prerequisite fails the run instead of skipping."""
    return os.environ.get("SDCTR_TESTS_STRICT") == "1"


def skip_or_fail(reason: str) -> NoReturn:
    """Skips the test for want of `reason`; fails it under strict mode (CI must never go green by
    skipping the real thing)."""
    import pytest

    if strict():
        pytest.fail(f"SDCTR_TESTS_STRICT=1: {reason}")
    pytest.skip(reason)
