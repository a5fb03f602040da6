"""What Docker documents, written out here so that a test compares sdctr with Docker and never with
sdctr's own constants (a test that reads the code's table passes whatever the table says)."""

from __future__ import annotations

# Docker's default capabilities (moby oci/caps/defaults.go; `docker run --help`'s reference, "Runtime
# privilege and Linux capabilities"), with their numbers from linux/capability.h.
DEFAULT_CAPS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
    "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13,
    "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31,
}
# The same set as /proc/PID/status shows it (CapEff, CapBnd): 00000000a80425fb in a Docker container
DEFAULT_CAPS_MASK = 0xA80425FB
assert sum(1 << bit for bit in DEFAULT_CAPS.values()) == DEFAULT_CAPS_MASK

# Numbers of the capabilities the tests add on top (linux/capability.h)
CAP_NUMBERS = {**DEFAULT_CAPS, "CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_SYS_PTRACE": 19,
               "CAP_SYS_TIME": 25}


def mask(*caps: str) -> int:
    return sum(1 << CAP_NUMBERS[c] for c in caps)
