"""A detached container's terminal or stdin (`run -dt`, `run -di`), kept open for `attach`.

Docker's shim holds the pty's master (or the stdin pipe's write end) while nobody is attached;
here the init does, for such containers only: after it has handed the container's PID 1 to
systemd, it stays in the unit as a small relay instead of exiting. It listens on
<run>/<id>/attach; what an attached client sends goes to the container's terminal (or stdin),
what the terminal shows goes to every client and to the journal (our stdout: the unit's stdout
stream), as Docker logs a -t container. It ends when the container's side of the terminal
closes, or with the unit (KillMode=mixed kills it after the container's PID 1 has gone).
Detaching (^P^Q, --detach-keys) is the client's business: it just disconnects. A client sends
frames (keys, or its terminal's size, which becomes the pty's: the container sees SIGWINCH).

A foreground `run -it` holds its pty's master in the CLI, outside the unit: what the container
writes last is read even though systemd kills what is left in the unit the moment its main
process exits (a relay inside may not have been scheduled by then). Here the init waits only to
adopt it: a CLI that detaches (^P^Q) hands the master over (FRAME_MASTER, with the descriptor),
and from then on this is a -dt container's relay, to the journal through a stream of its own.
"""

from __future__ import annotations

import _socket
import contextlib
import fcntl
import os
import select
import termios

from sdctr.paths import Paths

FRAME_DATA, FRAME_WINSIZE, FRAME_MASTER = b"d", b"w", b"m"


def attach_address(paths: Paths, cid: str) -> str:
    return str(paths.run_dir(cid) / "attach")


class NoConsole:
    """What every other container has: nothing to hold."""

    def in_child(self) -> None:
        pass

    def in_parent(self) -> None:
        pass

    def serve(self) -> None:
        pass


class Console:
    """Made before the fork: the pty (-t) or the stdin pipe (-i), and the listening socket, so
    that `attach` right after `run -d` finds it."""

    def __init__(self, paths: Paths, cid: str, tty: bool, *, adopt_for: tuple[str, str] | None = None):
        """`adopt_for`: a foreground run -t's (name, unit); its pty is the CLI's, our stdio."""
        self.tty, self.adopt_for = tty, adopt_for
        if adopt_for is not None:
            self.master = self.theirs = -1
        elif tty:
            self.master, self.theirs = os.openpty()
            os.set_inheritable(self.master, False)
        else:
            theirs, self.master = os.pipe2(os.O_CLOEXEC)  # master: the write end we keep
            self.theirs = theirs
        self.address = attach_address(paths, cid)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)
        self.listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        self.listener.bind(self.address)
        os.chmod(self.address, 0o600)
        self.listener.listen(8)

    def in_child(self) -> None:
        """The container's stdin (and with -t its stdout and stderr) become ours."""
        if self.adopt_for is not None:  # they are already: the CLI's pty
            self.listener.close()
            return
        for fd in (0, 1, 2) if self.tty else (0,):
            os.dup2(self.theirs, fd)
        os.close(self.theirs)
        os.close(self.master)
        self.listener.close()

    def in_parent(self) -> None:
        if self.theirs >= 0:
            os.close(self.theirs)

    def serve(self) -> None:
        """Until the container's terminal closes (-t), or for the unit's life (-i)."""
        devnull = os.open(os.devnull, os.O_RDWR)
        # run -it: the pty's slave is not ours to hold (its master would never read its end)
        for fd in (0, 1, 2) if self.adopt_for is not None else (0,):
            os.dup2(devnull, fd)
        os.close(devnull)
        if self.adopt_for is not None:
            self._adopt(*self.adopt_for)
        clients: dict[int, bytearray] = {}  # what each has sent that is not a whole frame yet
        listener = self.listener.fileno()
        while True:
            watched = [listener, *clients, *((self.master,) if self.tty else ())]
            ready, _, _ = select.select(watched, [], [])
            for fd in ready:
                if fd == listener:
                    with contextlib.suppress(OSError):
                        conn, _ = self.listener._accept()  # type: ignore[attr-defined]
                        os.set_blocking(conn, True)
                        clients[conn] = bytearray()
                elif fd == self.master:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:  # EIO: every slave descriptor is closed
                        data = b""
                    if not data:
                        return
                    _send(1, data)  # the journal
                    for c in [c for c in clients if not _send(c, data)]:
                        del clients[c]
                        os.close(c)
                elif not self._from_client(fd, clients[fd]):
                    del clients[fd]
                    os.close(fd)

    def _from_client(self, fd: int, pending: bytearray) -> bool:
        """A client's frames (FRAME_DATA: keys for the container; FRAME_WINSIZE: the size of
        its terminal); False once it has gone (detached) or the container's stdin is closed."""
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            return False
        pending += data
        while len(pending) >= 5:
            size = int.from_bytes(pending[1:5], "big")
            if len(pending) < 5 + size:
                break
            kind, payload = pending[0:1], bytes(pending[5:5 + size])
            del pending[:5 + size]
            if kind == FRAME_DATA and not _send(self.master, payload) and not self.tty:
                return False
            if kind == FRAME_WINSIZE and self.tty and len(payload) == 8:
                with contextlib.suppress(OSError):  # the kernel signals SIGWINCH to its foreground
                    fcntl.ioctl(self.master, termios.TIOCSWINSZ, payload)
        return True


    def _adopt(self, name: str, unit: str) -> None:
        """Until a CLI hands over its pty's master; then our stdout is a journal stream of the
        unit (the CLI journalled until now). A connection that brings no master is closed: the
        terminal is its foreground run's until that detaches."""
        import struct

        from sdctr.init import journal

        while self.master < 0:
            fd, _ = self.listener._accept()  # type: ignore[attr-defined]
            conn = _socket.socket(fileno=fd)
            try:
                conn.settimeout(5)
                kind, ancillary, _, _ = conn.recvmsg(1, _socket.CMSG_SPACE(4))
            except OSError:
                ancillary, kind = [], b""
            finally:
                conn.close()
            received = [struct.unpack("i", data[:4])[0] for level, what, data in ancillary
                        if level == _socket.SOL_SOCKET and what == _socket.SCM_RIGHTS and len(data) >= 4]
            if kind == FRAME_MASTER and received:
                self.master = received.pop(0)
                os.set_inheritable(self.master, False)
            for extra in received:
                os.close(extra)
        with contextlib.suppress(OSError):
            stream = journal.connect(name, unit, journal.STDOUT_PRIORITY)
            os.dup2(stream, 1)
            os.close(stream)


def frame(kind: bytes, payload: bytes) -> bytes:
    """What `attach` sends: one byte of kind, four of length, the payload."""
    return kind + len(payload).to_bytes(4, "big") + payload


def _send(fd: int, data: bytes) -> bool:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        return False
    return True
