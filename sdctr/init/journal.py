"""The container's stdout and stderr as two journal streams of its unit, so that `sdctr logs`
can tell them apart as `docker logs` does.

systemd connects StandardOutput=journal and StandardError=journal as ONE stream (stderr is a
dup of stdout), so journald cannot say which descriptor a line came from. The init, which runs
in the unit's cgroup, connects two streams of its own with the header systemd itself sends
(journald's stream protocol), stdout at priority 6 (info) and stderr at 3 (err), the
priorities Docker's journald log driver gives them; `sdctr logs` sends priority-3 lines to
stderr. Each stream is attributed to the unit by journald (the connecting process is in its
cgroup, and the header names it), so `journalctl -u ctr-<id>` shows both.

A foreground run's output goes to the caller first: the CLI relays it and writes a copy to two
such streams, which the init connects (the CLI's process is in the caller's cgroup, not the
unit's) and hands over on a socket the CLI listens on (`handoff_address`).
"""

from __future__ import annotations

import _socket
import os
import struct

from sdctr.paths import Paths

STREAM_SOCKET = "/run/systemd/journal/stdout"
STDOUT_PRIORITY, STDERR_PRIORITY = 6, 3


def handoff_address(paths: Paths, cid: str) -> str:
    return str(paths.run / f"{cid}.journal")


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


def hand_over(address: str, identifier: str, unit: str) -> bool:
    """Two streams (stdout, stderr) to the attached CLI listening at `address`; False when no
    CLI listens (a restarted foreground container: its caller has gone) or journald refuses."""
    if not os.path.exists(address):
        return False
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    fds: list[int] = []
    try:
        s.connect(address)
        fds = [connect(identifier, unit, STDOUT_PRIORITY), connect(identifier, unit, STDERR_PRIORITY)]
        s.sendmsg([b"J"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("ii", *fds))])
        return True
    except OSError:
        return False
    finally:
        s.close()
        for fd in fds:
            os.close(fd)


# --- the CLI's side ---------------------------------------------------------------------------

def listen(address: str) -> _socket.socket:
    unlink(address)
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    s.bind(address)
    os.chmod(address, 0o600)
    s.listen(1)
    return s


def unlink(address: str) -> None:
    try:
        os.unlink(address)
    except FileNotFoundError:
        pass


def receive(listener: _socket.socket, timeout: float) -> tuple[int, int] | None:
    """The (stdout, stderr) streams the init handed over, if it did within `timeout`."""
    listener.settimeout(timeout)
    try:
        fd, _ = listener._accept()  # type: ignore[attr-defined]  # _socket's accept: the socket module is ~2 ms of every run
    except OSError:  # socket.timeout is an OSError
        return None
    conn = _socket.socket(fileno=fd)
    try:
        conn.settimeout(timeout)
        _, ancillary, _, _ = conn.recvmsg(1, _socket.CMSG_SPACE(2 * 4))
    except OSError:
        return None
    finally:
        conn.close()
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 8:
            out, err = struct.unpack("ii", data[:8])
            os.set_inheritable(out, False)
            os.set_inheritable(err, False)
            return out, err
    return None
