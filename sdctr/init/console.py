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
"""

from __future__ import annotations

import _socket
import contextlib
import fcntl
import os
import select
import termios

from sdctr.paths import Paths

FRAME_DATA, FRAME_WINSIZE = b"d", b"w"


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

    def __init__(self, paths: Paths, cid: str, tty: bool):
        self.tty = tty
        if tty:
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
        for fd in (0, 1, 2) if self.tty else (0,):
            os.dup2(self.theirs, fd)
        os.close(self.theirs)
        os.close(self.master)
        self.listener.close()

    def in_parent(self) -> None:
        os.close(self.theirs)

    def serve(self) -> None:
        """Until the container's terminal closes (-t), or for the unit's life (-i)."""
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
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
