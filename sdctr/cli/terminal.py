"""`sdctr attach`: our terminal to a detached container's (`run -dit`), or our stdin to its
stdin (`run -di`), through the init that holds them (sdctr.init.console); Docker's detach keys
(^P^Q, or --detach-keys) leave it running. A container with neither shows its output as it
comes, as `docker attach` does."""

from __future__ import annotations

import _socket
import contextlib
import os
import select
import sys
import termios

from sdctr.cli.containers import paths_of, systemd_of
from sdctr.cli.detachkeys import DEFAULT_DETACH_KEYS, DetachScanner, parse_detach_keys
from sdctr.log import SdctrError
from sdctr.runtime import lifecycle as containers
from sdctr.state import find

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

def cmd_attach(args: argparse.Namespace) -> int:
    from sdctr.init.console import attach_address

    paths = paths_of(args)
    sd, _ = systemd_of(args)
    spec = find(paths, args.container)
    containers.running_unit(sd, spec)
    keys = parse_detach_keys(args.detach_keys or DEFAULT_DETACH_KEYS)
    if spec.attached and spec.tty:  # its pty is still the CLI's (sdctr.init.console: adoption)
        raise SdctrError(f"container {spec.name} is attached to the terminal of its 'sdctr run -it'",
                         hint="detach that one first (ctrl-p ctrl-q), then attach here")
    address = attach_address(paths, spec.id)
    if not os.path.exists(address) or not (spec.tty or spec.interactive):
        _follow_output(spec, sd)
        return containers.wait_exit(paths, spec, sd, attached=False, poll=0.1)
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        conn.connect(address)
    except OSError as e:
        raise SdctrError(f"cannot attach to container {spec.name}: {e.strerror}") from e
    if not spec.tty:  # -i alone: its output is in the journal, its stdin is ours
        import threading

        threading.Thread(target=_follow_output, args=(spec, sd), daemon=True).start()
    detached = _relay(conn.fileno(), None if args.no_stdin else sys.stdin.fileno(), DetachScanner(keys),
                      show=spec.tty)
    conn.close()
    if detached:
        return 0
    return containers.wait_exit(paths, spec, sd, attached=False, poll=0.1)


def _follow_output(spec: object, sd: object) -> None:
    from sdctr.runtime import logs

    logs.show(spec, follow=True, tail="0", since=None, timestamps=False,  # type: ignore[arg-type]
              running=lambda: containers.is_running(sd, spec))  # type: ignore[arg-type]


def _relay(conn: int, stdin: int | None, scanner: DetachScanner, *, show: bool) -> bool:
    """Until the container's side ends (False) or the user detaches (True)."""
    from sdctr.init.console import FRAME_DATA, frame

    with _our_terminal(stdin, conn) as wake:
        watched = [conn, wake, *(() if stdin is None else (stdin,))]
        while True:
            try:
                ready, _, _ = select.select(watched, [], [])
            except InterruptedError:
                continue
            if wake in ready and stdin is not None:
                _read(wake)
                _send_size(stdin, conn)
            if conn in ready:
                data = _read(conn)
                if not data:
                    return False
                if show:
                    _write_all(sys.stdout.fileno(), data)
            if stdin is not None and stdin in ready:
                data = _read(stdin)
                if not data:  # end of our input: the container keeps running (Docker: -i's EOF)
                    watched.remove(stdin)
                    continue
                data, detach = scanner.feed(data)
                if data:
                    _write_all(conn, frame(FRAME_DATA, data))
                if detach:
                    return True


@contextlib.contextmanager
def _our_terminal(stdin: int | None, conn: int) -> Iterator[int]:
    """Our terminal in raw mode, its size sent along at once and at every SIGWINCH (a byte on
    the pipe whose read end we yield wakes the relay); all restored after."""
    import signal

    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    saved, old_handler = None, None
    if stdin is not None and os.isatty(stdin):
        import tty

        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin, termios.TCSANOW)  # as Docker's MakeRaw: keys typed ahead are kept
        _send_size(stdin, conn)
        old_handler = signal.signal(signal.SIGWINCH, lambda *_: os.write(wake_w, b"w"))
    try:
        yield wake_r
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGWINCH, old_handler)
        if saved is not None and stdin is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(wake_r)
        os.close(wake_w)


def _send_size(tty_fd: int, conn: int) -> None:
    from sdctr.init.console import FRAME_WINSIZE, frame

    _write_all(conn, frame(FRAME_WINSIZE, _window_size(tty_fd)))


def _window_size(fd: int) -> bytes:
    import fcntl

    try:
        return bytes(fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return b"\0" * 8


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError):
        while data:
            data = data[os.write(fd, data):]
