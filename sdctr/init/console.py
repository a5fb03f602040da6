"""A detached container's terminal or stdin (`run -dt`, `run -di`), kept open for `attach`.

Docker's shim holds the pty's master (or the stdin pipe's write end) while nobody is attached;
here the init does, for such containers only: after it has handed the container's PID 1 to
systemd, it stays in the unit as a small relay instead of exiting. It listens on
<run>/<id>/attach; what an attached client sends goes to the container's terminal (or stdin),
what the terminal shows goes to every client and to the journal (our stdout: the unit's stdout
stream), as Docker logs a -t container. It ends when the container's side of the terminal
closes, or with the unit (KillMode=mixed kills it after the container's PID 1 has gone).
Detaching (^P^Q, --detach-keys) is the client's business: it just disconnects.
"""

from __future__ import annotations

import _socket
import contextlib
import os
import select

from sdctr.paths import Paths


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
        clients: list[int] = []
        listener = self.listener.fileno()
        while True:
            watched = [listener, *clients, *((self.master,) if self.tty else ())]
            ready, _, _ = select.select(watched, [], [])
            for fd in ready:
                if fd == listener:
                    with contextlib.suppress(OSError):
                        conn, _ = self.listener._accept()  # type: ignore[attr-defined]
                        os.set_blocking(conn, True)
                        clients.append(conn)
                elif fd == self.master:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:  # EIO: every slave descriptor is closed
                        data = b""
                    if not data:
                        return
                    _send(1, data)  # the journal
                    for c in list(clients):
                        if not _send(c, data):
                            clients.remove(c)
                            os.close(c)
                else:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        data = b""
                    if not data:  # the client detached
                        clients.remove(fd)
                        os.close(fd)
                    elif not _send(self.master, data) and not self.tty:
                        return  # the container closed its stdin


def _send(fd: int, data: bytes) -> bool:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        return False
    return True
