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
- ``pid1_probe``: a static C probe of the container's /proc/1/exe (CVE-2019-5736's class)
- ``docker``: what Docker documents (its default capabilities), to compare sdctr with
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
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


def require_exec(directory: Path) -> None:
    """Skips (fails under strict mode) unless a program can run from `directory`: a /tmp mounted
    noexec cannot, and pytest's tmp_path lives there unless --basetemp or TMPDIR say otherwise."""
    probe = directory / ".exec-probe"
    probe.write_text("#!/bin/sh\nexit 0\n")
    probe.chmod(0o755)
    try:
        ran = subprocess.run([str(probe)]).returncode == 0
    except PermissionError:
        ran = False
    finally:
        probe.unlink()
    if not ran:
        skip_or_fail(f"{directory} is on a file system mounted noexec: run pytest with --basetemp "
                     "(or TMPDIR) on one that is not")


def require_user_xattrs(directory: Path) -> None:
    """Skips (fails under strict mode) unless `directory`'s file system takes user.* extended
    attributes (tmpfs before Linux 6.6 does not; some overlay and network file systems neither)."""
    try:
        os.setxattr(directory, "user.sdctr-probe", b"1")
        os.removexattr(directory, "user.sdctr-probe")
    except OSError as e:
        if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            raise
        skip_or_fail(f"{directory}'s file system takes no user.* xattrs ({e.strerror}): run pytest "
                     "with --basetemp (or TMPDIR) on one that does")
