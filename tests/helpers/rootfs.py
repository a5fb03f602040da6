"""The busybox root file system that the tiers' containers run, built on this machine.

Its content is busybox-rootfs.sh's, the one builder: test hosts and VM payloads run the same
script inside, with their own busybox (see ``BUSYBOX_ROOTFS_SH``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from . import skip_or_fail

BUSYBOX = "/bin/busybox"
BUSYBOX_ROOTFS_SH = Path(__file__).resolve().with_name("busybox-rootfs.sh")


def build_busybox_rootfs(root: Path) -> Path:
    """Fills `root` and returns it. Needs busybox-static (dynamic busybox would need libc)."""
    if not os.path.exists(BUSYBOX):
        raise FileNotFoundError(f"{BUSYBOX} is missing (Debian: apt-get install busybox-static)")
    r = subprocess.run(["sh", str(BUSYBOX_ROOTFS_SH), str(root)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{BUSYBOX_ROOTFS_SH.name} {root} exited {r.returncode}: {r.stderr.strip()}")
    return root


def require_busybox() -> None:
    """Skips the test without busybox-static; fails it under SDCTR_TESTS_STRICT=1."""
    if not os.path.exists(BUSYBOX):
        skip_or_fail(f"needs busybox-static ({BUSYBOX})")
