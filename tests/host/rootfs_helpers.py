"""A tiny root file system for host-tier tests: Debian's static busybox and its applets, plus
/etc/passwd and /etc/group with root, an `app` user and `nobody`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX = "/bin/busybox"

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """\
root:x:0:
wheel:x:10:app
app:x:1000:
users:x:100:app
nogroup:x:65534:
"""


def build_busybox_rootfs(root: Path) -> Path:
    """Fills `root` and returns it. Needs busybox-static (dynamic busybox would need libc)."""
    if not os.path.exists(BUSYBOX):
        raise FileNotFoundError(f"{BUSYBOX} is missing (Debian: apt-get install busybox-static)")
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # a test's temporary directory is 0700: non-root users could not use /
    for d in ("bin", "etc", "root", "home/app", "tmp", "proc", "sys", "dev", "mnt"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    os.chown(root / "home/app", 1000, 1000)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout
    for applet in applets.split():
        link = root / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    return root
