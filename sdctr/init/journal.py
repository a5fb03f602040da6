"""The container's stdout and stderr as two journal streams of its unit, so that `sdctr logs`
can tell them apart as `docker logs` does.

systemd connects StandardOutput=journal and StandardError=journal as ONE stream (stderr is a
dup of stdout), so journald cannot say which descriptor a line came from. The init, which runs
in the unit's cgroup, connects two streams of its own with the header systemd itself sends
(journald's stream protocol), stdout at priority 6 (info) and stderr at 3 (err), the
priorities Docker's journald log driver gives them; `sdctr logs` sends priority-3 lines to
stderr. Each stream is attributed to the unit by journald (the connecting process is in its
cgroup, and the header names it), so `journalctl -u ctr-<id>` shows both.

A foreground run's output goes to the caller first: the CLI relays it and writes a copy as
native journal entries (`native_entry`). Not as a stream: journald names a stream's unit after
the process that writes each chunk (its per-write credentials), and the CLI is in the caller's
cgroup, not the unit's (seen: a stream handed over from the unit's init carried the lines as the
CLI's, without _SYSTEMD_UNIT). An entry from root with OBJECT_SYSTEMD_UNIT= is what
`journalctl -u` and `systemctl status` show as a daemon's message about the unit.
"""

from __future__ import annotations

import _socket
import os
import struct

STREAM_SOCKET = "/run/systemd/journal/stdout"
NATIVE_SOCKET = "/run/systemd/journal/socket"
# a foreground run's copy: the field `sdctr logs` finds its entries by (OBJECT_SYSTEMD_UNIT= is
# also a daemon's message about the unit), and journald's LineMax, where a stream splits a line
FOREGROUND_FIELD = "SDCTR_FOREGROUND_OF"
LINE_MAX = 48 * 1024
STDOUT_PRIORITY, STDERR_PRIORITY = 6, 3


def connect(identifier: str, unit: str, priority: int) -> int:
    """A journal stream, as systemd's exec_spawn connects one: identifier, unit, priority, no
    level prefix (a container's "<3>" is text, as Docker keeps it), no forwarding."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        s.connect(STREAM_SOCKET)
        s.shutdown(_socket.SHUT_RD)
        s.sendall(f"{identifier}\n{unit}\n{priority}\n0\n0\n0\n0\n".encode())
    except BaseException:
        s.close()
        raise
    return s.detach()


def _is_journal_stream(fd: int) -> bool:
    try:
        s = _socket.socket(fileno=fd)
    except OSError:  # not a socket
        return False
    try:
        return bool(s.getpeername() == STREAM_SOCKET)
    except OSError:
        return False
    finally:
        s.detach()


def split_streams(identifier: str, unit: str) -> bool:
    """Our stdout and stderr, when they are systemd's one journal stream, become two; False
    where they are not the journal's or journald refuses (systemd's stream stays)."""
    if not _is_journal_stream(1):
        return False
    try:
        out = connect(identifier, unit, STDOUT_PRIORITY)
    except OSError:
        return False
    try:
        err = connect(identifier, unit, STDERR_PRIORITY)
    except OSError:
        os.close(out)
        return False
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(out)
    os.close(err)
    return True


def native_entry(fields: dict[str, str | bytes]) -> bytes:
    """One entry in journald's native protocol (NATIVE_SOCKET): KEY=value lines, or for a
    value that holds a newline, KEY, its length as a little-endian 64-bit number, the bytes."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode() if isinstance(value, str) else value
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)
