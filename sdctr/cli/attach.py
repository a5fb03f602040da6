"""A foreground `sdctr run`: the same transient service as `-d`, with the caller's descriptors
as its stdio (as `systemd-run --pipe` does), or a pty for -t. The CLI stays only to relay
Ctrl-C and the terminal, and exits with the container's status; systemd still supervises."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import termios
import time
from collections.abc import Iterator

from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.runtime import lifecycle as containers
from sdctr.spec import ContainerSpec

TYPE_CHECKING = False  # typing costs ~3 ms to import, and run needs none of it
if TYPE_CHECKING:
    import threading
    from collections.abc import Iterable
    from types import FrameType

    from sdctr.image.store import Image
    from sdctr.systemd.manager import Systemd
    from sdctr.systemd.properties import Host

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def run_attached(paths: Paths, spec: ContainerSpec, image: Image, sd: Systemd, host: Host) -> int:
    if not host.transient_hooks:
        return _run_following_journal(paths, spec, image, sd, host)
    if spec.tty:
        return _run_with_pty(paths, spec, image, sd, host)
    streams = _Streams(spec.interactive)
    try:
        with _forward_signals() as proxy:
            try:
                spec = containers.run(paths, spec, image, sd, host, stdio=streams.stdio)
            finally:
                streams.handed_over()
            proxy.aim(sd, spec)
            return containers.wait_exit(paths, spec, sd)
    finally:
        streams.finish()


class _Streams:
    """The container's stdio without -t: ours, except that a terminal is never handed in (the
    container would hold the administrator's terminal: read its keys, change its modes, TIOCSTI
    into it with CAP_SYS_ADMIN); a pipe we relay takes its place, as Docker's streams do."""

    def __init__(self, interactive: bool):
        stdin = sys.stdin.fileno() if interactive else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        ours = [stdin, sys.stdout.fileno(), sys.stderr.fileno()]
        self.theirs: list[int] = []
        self.outputs: list[threading.Thread] = []
        if not any(os.isatty(fd) for fd in ours):
            self.stdio = (ours[0], ours[1], ours[2])
            self.theirs = [] if interactive else [stdin]
            return
        import threading  # only with a terminal: threading is ~1 ms of every run's start

        self.done = threading.Event()
        if not interactive:
            self.theirs.append(stdin)
        elif os.isatty(stdin):
            r, w = os.pipe2(os.O_CLOEXEC)
            ours[0] = r
            self.theirs.append(r)
            threading.Thread(target=_copy_in, args=(stdin, w), daemon=True).start()
        for fd in (1, 2):
            if fd == 2 and _same_terminal(1, 2):  # one pipe keeps their order, as on a terminal
                ours[2] = ours[1]
            elif os.isatty(fd):
                r, w = os.pipe2(os.O_CLOEXEC)
                ours[fd] = w
                self.theirs.append(w)
                pump = threading.Thread(target=_copy_out, args=(r, fd, self.done), daemon=True)
                pump.start()
                self.outputs.append(pump)
        self.stdio = (ours[0], ours[1], ours[2])

    def handed_over(self) -> None:
        """systemd holds the container's ends now: ours would keep its output pipes open."""
        for fd in self.theirs:
            os.close(fd)
        self.theirs = []

    def finish(self) -> None:
        """What the container wrote before it exited, then stop (systemd keeps its copies of
        the pipes while the unit is loaded: no end of file comes)."""
        if self.outputs:
            self.done.set()
        for pump in self.outputs:
            pump.join(timeout=2)


def _same_terminal(a: int, b: int) -> bool:
    return os.isatty(a) and os.isatty(b) and os.path.samestat(os.fstat(a), os.fstat(b))


def _copy_in(src: int, dst: int) -> None:
    while True:
        try:
            data = os.read(src, 65536)
            if not data:  # ^D at our terminal: the container reads end of file
                os.close(dst)
                return
            _write_all(dst, data)
        except OSError:
            return


def _copy_out(src: int, dst: int, done: threading.Event) -> None:
    try:
        while True:
            ready, _, _ = select.select([src], [], [], 0.1)
            if not ready:
                if done.is_set():
                    return
                continue
            data = os.read(src, 65536)
            if not data:
                return
            _write_all(dst, data)
    except OSError:
        return
    finally:
        os.close(src)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _run_following_journal(paths: Paths, spec: ContainerSpec, image: Image, sd: Systemd, host: Host) -> int:
    """systemd before v236 cannot take our descriptors: the container writes to the journal
    and we follow it there (stdout and stderr both arrive on our stdout), as `docker attach`
    to a detached container would. No stdin and no terminal on such a host."""
    from sdctr.external import popen
    from sdctr.runtime.logs import journalctl_argv

    if spec.interactive or spec.tty:
        raise SdctrError("-i and -t need systemd 236 or newer (it passes our terminal to the unit)",
                         hint="run it detached with -d and use 'sdctr logs -f'")
    import threading

    with _forward_signals() as proxy:
        spec = containers.run(paths, spec, image, sd, host)
        proxy.aim(sd, spec)
        journal = _JournalCopy(journalctl_argv(spec, False, "all", None))
        follow = popen([*journal.argv, "--follow"])
        pump = threading.Thread(target=journal.copy, args=(follow.stdout,), daemon=True)
        pump.start()
        try:
            status = containers.wait_exit(paths, spec, sd)
            if spec.remove:  # systemd < 236 has no CollectMode: a failed unit would linger
                sd.settle(spec.unit)
                sd.reset_failed(spec.unit)
            return status
        finally:
            follow.terminate()
            pump.join(timeout=1)
            journal.catch_up()


class _JournalCopy:
    """Journal entries to our stdout, remembering the last cursor: journald may store the
    container's last lines after we saw it exit, so they are fetched once more at the end."""

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.cursor: str | None = None

    def copy(self, stream: Iterable[bytes]) -> int:
        import json

        from sdctr.runtime.logs import format_entry

        count = 0
        for raw in stream:
            entry = json.loads(raw)
            self.cursor = entry.get("__CURSOR", self.cursor)
            sys.stdout.buffer.write(format_entry(entry, False))
            sys.stdout.buffer.flush()
            count += 1
        return count

    def catch_up(self, quiet: float = 0.3, limit: float = 2.0) -> None:
        """Until nothing new arrived for `quiet` seconds (or `limit` passed)."""
        from sdctr.external import run

        deadline, last_new = time.monotonic() + limit, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last_new < quiet:
            after = ["--after-cursor", self.cursor] if self.cursor else []
            out = run([*self.argv, *after], check=False).stdout
            if self.copy(out.encode().splitlines()):
                last_new = time.monotonic()
            time.sleep(0.05)


class _SignalProxy:
    """Docker's --sig-proxy: a signal to the CLI goes to the container's PID 1 (its reaper
    forwards it), with kill(2): a D-Bus call from inside a handler would re-enter the
    connection the main loop may be using. A signal that comes while the container is still
    starting is held and delivered once it runs."""

    def __init__(self) -> None:
        self.pid = 0
        self.pending: list[int] = []

    def aim(self, sd: Systemd, spec: ContainerSpec) -> None:
        self.pid = sd.main_pid(spec.unit)
        while self.pending:
            self(self.pending.pop(0), None)

    def __call__(self, signum: int, _: FrameType | None) -> None:
        if not self.pid:
            self.pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)


@contextlib.contextmanager
def _forward_signals() -> Iterator[_SignalProxy]:
    proxy = _SignalProxy()
    old = {s: signal.signal(s, proxy) for s in FORWARDED}
    try:
        yield proxy
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _run_with_pty(paths: Paths, spec: ContainerSpec, image: Image, sd: Systemd, host: Host) -> int:
    import threading
    import tty as ttymod

    master, slave = os.openpty()
    stdin_fd = sys.stdin.fileno()
    is_tty = os.isatty(stdin_fd)
    saved = termios.tcgetattr(stdin_fd) if is_tty else None
    if is_tty:
        _copy_window_size(stdin_fd, master)
        ttymod.setraw(stdin_fd)
    done = threading.Event()
    pump = threading.Thread(target=_pump, args=(master, stdin_fd if spec.interactive else None, done),
                            daemon=True)
    # The pump runs from the start: what the init says when it fails goes to the pty too.
    pump.start()
    try:
        try:
            spec = containers.run(paths, spec, image, sd, host, stdio=(slave, slave, slave))
        finally:
            os.close(slave)
        if is_tty:  # raw mode: Ctrl-C travels as a byte through the pty
            return containers.wait_exit(paths, spec, sd)
        with _forward_signals() as proxy:
            proxy.aim(sd, spec)
            return containers.wait_exit(paths, spec, sd)
    finally:
        pump.join(timeout=1)  # the master reads EOF once the container's side has closed
        done.set()
        if saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
        with contextlib.suppress(OSError):
            os.close(master)


def _pump(master: int, stdin_fd: int | None, done: threading.Event) -> None:
    """Terminal bytes both ways; in raw mode Ctrl-C travels as a byte to the container's pty."""
    fds = [master] + ([stdin_fd] if stdin_fd is not None else [])
    out = sys.stdout.fileno()
    while not done.is_set():
        ready, _, _ = select.select(fds, [], [], 0.1)
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                fds.remove(fd)
                if fd == master:
                    return
                continue
            os.write(out if fd == master else master, data)


def _copy_window_size(src: int, dst: int) -> None:
    import fcntl

    with contextlib.suppress(OSError):
        fcntl.ioctl(dst, termios.TIOCSWINSZ, fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8))
