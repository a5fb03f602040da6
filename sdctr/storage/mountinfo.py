"""/proc/self/mountinfo, parsed in one place (proc(5)).

    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)

The kernel writes a space, tab, newline or backslash in a path as a three-digit octal escape
(``\\040`` for a space); every field read here is unescaped, so a target compares equal to the
Path it was mounted at.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# what the kernel escapes in mountinfo's paths (fs/proc_namespace.c: mangle(), " \t\n\\"); a
# shell script that greps mountinfo for a path holding one of these would miss it
ESCAPED = frozenset(" \t\n\\")
_OCTAL = re.compile(r"\\([0-7]{3})")


class MountInfo:
    __slots__ = ("fstype", "options", "source", "target")

    def __init__(self, target: Path, fstype: str, source: str, options: str):
        self.target, self.fstype, self.source, self.options = target, fstype, source, options

    def __repr__(self) -> str:
        return f"MountInfo({str(self.target)!r}, {self.fstype!r}, {self.source!r}, {self.options!r})"


def unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field) if "\\" in field else field


def parse(text: str) -> list[MountInfo]:
    """Each line's mount point (5), file system type (9), source (10) and super options (11)."""
    out = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        out.append(MountInfo(Path(unescape(fields[4])), rest[0], unescape(rest[1]), unescape(rest[2])))
    return out


def mounts() -> list[MountInfo]:
    """Every mount this process sees, in mount order (the last one at a path is on top)."""
    with open("/proc/self/mountinfo") as f:
        return parse(f.read())


def mounts_at(path: Path) -> list[MountInfo]:
    real = Path(os.path.realpath(path))
    return [m for m in mounts() if m.target == real]


def mounts_under(path: Path) -> list[MountInfo]:
    """Mounts at or below ``path``."""
    real = Path(os.path.realpath(path))
    return [m for m in mounts() if m.target == real or real in m.target.parents]
