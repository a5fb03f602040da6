"""A foreground `sdctr run`: the same transient service as `-d`, with the caller's descriptors
as its stdio (as `systemd-run --pipe` does), or a pty for -t. The CLI stays only to relay Ctrl-C
and the terminal, and exits with the container's status; systemd still supervises. ^P^Q detaches
a -it run: the init takes its pty over, and it runs on as a -dit container."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import termios
import time
from collections.abc import Iterator

from sdctr.init import journal
from sdctr.log import SdctrError, debug
from sdctr.paths import Paths
from sdctr.runtime import lifecycle as containers
from sdctr.spec import ContainerSpec

TYPE_CHECKING = False  # typing costs ~3 ms to import, and run needs none of it
if TYPE_CHECKING:
    import _socket
    import threading
    from collections.abc import Iterable
    from types import FrameType

    from sdctr.cli.detachkeys import DetachScanner
    from sdctr.image.store import Image
    from sdctr.systemd.manager import Systemd
    from sdctr.systemd.properties import Host

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def run_attached(paths: Paths, spec: ContainerSpec, image: Image, sd: Systemd, host: Host, *,
                 detach_keys: bytes = b"") -> int:
    if not host.transient_hooks:
        return _run_following_journal(paths, spec, image, sd, host)
    journal = _ToJournal(paths, spec)
    try:
        if spec.tty:
            return _run_with_pty(paths, spec, image, sd, host, journal=journal, detach_keys=detach_keys)
        streams = _Streams(spec.interactive, journal)
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
    finally:
        journal.close()


class _ToJournal:
    """A copy of what a foreground container writes, for the journal, as native entries of root
    with OBJECT_SYSTEMD_UNIT= (sdctr.init.journal says why not a stream): `journalctl -u` and
    `systemctl status` show them, `sdctr logs` finds them by FOREGROUND_FIELD. A line at a time,
    as a stream would split them (LINE_MAX too); what is left without a newline goes at close."""

    def __init__(self, paths: Paths, spec: ContainerSpec):
        import threading

        from sdctr import linux

        self.lock = threading.Lock()
        self.fields: dict[str, str | bytes] = {"SYSLOG_IDENTIFIER": spec.name,
                                               "OBJECT_SYSTEMD_UNIT": spec.unit,
                                               journal.FOREGROUND_FIELD: spec.id}
        self.partial = [b"", b""]
        self.sock: _socket.socket | None = None
        try:
            self.sock = linux.datagram_socket(linux.AF_UNIX)
            self.sock.connect(journal.NATIVE_SOCKET)
        except OSError as e:  # the run goes on; its lines reach the terminal only
            debug(f"no journal copy of the foreground run: {e}")
            self.close()

    def write(self, which: int, data: bytes) -> None:
        """`which`: 0 for the container's stdout, 1 for its stderr."""
        with self.lock:
            *lines, rest = (self.partial[which] + data).split(b"\n")
            while len(rest) >= journal.LINE_MAX:
                lines.append(rest[:journal.LINE_MAX])
                rest = rest[journal.LINE_MAX:]
            self.partial[which] = rest
            for line in lines:
                self._send(which, line)

    def _send(self, which: int, line: bytes) -> None:
        if self.sock is None:
            return
        priority = journal.STDERR_PRIORITY if which else journal.STDOUT_PRIORITY
        entry = journal.native_entry({"MESSAGE": line, "PRIORITY": str(priority), **self.fields})
        try:
            self.sock.send(entry)
        except OSError as e:  # journald went away: the terminal still gets every byte
            debug(f"journal copy ended: {e}")
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        with self.lock:
            for which, rest in enumerate(self.partial):
                if rest:
                    self._send(which, rest)
            self.partial = [b"", b""]
            if self.sock is not None:
                self.sock.close()
                self.sock = None


class _Streams:
    """The container's stdio without -t. Its stdout and stderr are pipes we relay, to ours and
    to the journal (a foreground run's lines are in `sdctr logs` and `journalctl -u` too, as
    Docker's log driver has them), each to its own: stderr stays stderr. A terminal is never
    handed in (the container would hold the administrator's terminal: read its keys, change
    its modes, TIOCSTI into it with CAP_SYS_ADMIN): with -i, a pipe we relay takes its place."""

    def __init__(self, interactive: bool, journal: _ToJournal):
        import threading

        stdin = sys.stdin.fileno() if interactive else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.theirs: list[int] = [] if interactive else [stdin]
        if interactive and os.isatty(stdin):
            r, w = os.pipe2(os.O_CLOEXEC)
            self.theirs.append(r)
            threading.Thread(target=_copy_in, args=(stdin, w), daemon=True).start()
            stdin = r
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        self.theirs += [out_w, err_w]
        self.stdio = (stdin, out_w, err_w)
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC)
        sources = {out_r: (1, 0), err_r: (2, 1)}  # ours, and the journal stream: 0 stdout, 1 stderr
        self.pump = threading.Thread(target=_relay, args=(sources, journal, self.wake_r), daemon=True)
        self.pump.start()

    def handed_over(self) -> None:
        """systemd holds the container's ends now: ours would keep its output pipes open."""
        for fd in self.theirs:
            os.close(fd)
        self.theirs = []

    def finish(self) -> None:
        """What the container wrote before it exited, then stop (systemd keeps its copies of
        the pipes while the unit is loaded: no end of file comes)."""
        os.write(self.wake_w, b"x")
        self.pump.join(timeout=5)
        os.close(self.wake_w)
        os.close(self.wake_r)


def _relay(sources: dict[int, tuple[int, int]], journal: _ToJournal, wake: int) -> None:
    """Each source to its (our descriptor, journal stream) until end of file, or until woken:
    then what is already in the pipes, and stop."""
    ours_open = {dst: True for dst, _ in sources.values()}
    stopping = False
    try:
        while sources:
            ready, _, _ = select.select([*sources, *(() if stopping else (wake,))], [], [],
                                        0 if stopping else None)
            if not ready:
                return
            for fd in ready:
                if fd == wake:
                    stopping = True
                    continue
                data = os.read(fd, 65536)
                dst, which = sources[fd]
                if not data:
                    del sources[fd]
                    os.close(fd)
                    continue
                if ours_open[dst]:
                    try:
                        _write_all(dst, data)
                    except OSError:  # our reader left (`| head`): the journal still gets it all
                        ours_open[dst] = False
                journal.write(which, data)
    finally:
        for fd in sources:
            os.close(fd)


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


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _run_following_journal(paths: Paths, spec: ContainerSpec, image: Image, sd: Systemd, host: Host) -> int:
    """systemd before v236 cannot take our descriptors: the container writes to the journal
    and we follow it there, as `docker attach` to a detached container would (stderr's lines
    on our stderr). No stdin and no terminal on such a host."""
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

        from sdctr.runtime.logs import write_entry

        count = 0
        for raw in stream:
            entry = json.loads(raw)
            self.cursor = entry.get("__CURSOR", self.cursor)
            write_entry(entry, False)
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


def _run_with_pty(paths: Paths, spec: ContainerSpec, image: Image, sd: Systemd, host: Host, *,
                  journal: _ToJournal, detach_keys: bytes) -> int:
    """run -t: the container's pty is ours, its master held here, outside the unit, so that what
    the container writes last is read (systemd kills what is left in the unit at once). Our
    terminal's size is the pty's, at the start and at every SIGWINCH; with -i the detach keys
    (^P^Q) hand the master to the init (sdctr.init.console) and leave the container running."""
    import threading
    import tty as ttymod

    master, slave = os.openpty()
    stdin_fd = sys.stdin.fileno()
    is_tty = os.isatty(stdin_fd)
    window = stdin_fd if is_tty else sys.stdout.fileno()
    saved = termios.tcgetattr(stdin_fd) if is_tty else None
    _copy_window_size(window, master)
    old_winch = signal.signal(signal.SIGWINCH, lambda *_: _copy_window_size(window, master))
    if is_tty:
        ttymod.setraw(stdin_fd)
    done, ended = threading.Event(), threading.Event()
    keys = stdin_fd if spec.interactive else None
    scanner = _detach_scanner(detach_keys) if keys is not None else None
    pump = threading.Thread(target=_pump, args=(master, keys, done, journal), daemon=True,
                            kwargs={"scanner": scanner, "detached": ended})
    # The pump runs from the start: what the init says when it fails goes to the pty too.
    pump.start()
    handed_over = False
    try:
        try:
            spec = containers.run(paths, spec, image, sd, host, stdio=(slave, slave, slave))
        finally:
            os.close(slave)
        with _forward_signals() if not is_tty else contextlib.nullcontext() as proxy:  # raw: ^C is a byte
            if proxy is not None:
                proxy.aim(sd, spec)
            status: list[int] = []

            def wait() -> None:
                status.append(containers.wait_exit(paths, spec, sd))
                ended.set()
            threading.Thread(target=wait, daemon=True).start()
            while not ended.wait(0.2):
                pass
            if status:
                return status[0]
        _hand_over(paths, spec, master)  # detached: the pump has stopped reading
        handed_over = True
        return 0
    finally:
        if not handed_over:
            pump.join(timeout=1)  # the master reads EOF once the container's side has closed
        done.set()
        signal.signal(signal.SIGWINCH, old_winch)
        if saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
        with contextlib.suppress(OSError):
            os.close(master)


def _detach_scanner(keys: bytes) -> DetachScanner:
    from sdctr.cli.detachkeys import DetachScanner

    return DetachScanner(keys)


def _hand_over(paths: Paths, spec: ContainerSpec, master: int) -> None:
    """The pty's master to the init, which keeps it for `attach` as a -dt container's."""
    import _socket

    from sdctr.init.console import FRAME_MASTER, attach_address

    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        conn.connect(attach_address(paths, spec.id))
        rights = (_socket.SOL_SOCKET, _socket.SCM_RIGHTS, master.to_bytes(4, sys.byteorder))
        conn.sendmsg([FRAME_MASTER], [rights])
    except OSError as e:
        raise SdctrError(f"cannot detach from container {spec.name}: {e.strerror}",
                         hint="its terminal closes with us: it may end") from e
    finally:
        conn.close()
    _now_detached(paths, spec)


def _pump(master: int, stdin_fd: int | None, done: threading.Event, journal: _ToJournal, *,
          scanner: DetachScanner | None, detached: threading.Event) -> None:
    """Terminal bytes both ways; in raw mode Ctrl-C travels as a byte to the container's pty.
    What the container's terminal shows goes to the journal too, as Docker logs a -t container.
    The detach keys in what we type stop it (and set `detached`), the master left unread."""
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
            if fd == master:
                _write_all(out, data)
                journal.write(0, data)
                continue
            detach = False
            if scanner is not None:
                data, detach = scanner.feed(data)
            _write_all(master, data)
            if detach:
                detached.set()
                return


def _copy_window_size(src: int, dst: int) -> None:
    import fcntl

    with contextlib.suppress(OSError):
        fcntl.ioctl(dst, termios.TIOCSWINSZ, fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8))


def _now_detached(paths: Paths, spec: ContainerSpec) -> None:
    """After ^P^Q the container is a detached one: nobody reads an exit file for it."""
    from sdctr.state import reader_mark, save_spec

    save_spec(paths, spec.replace(attached=False))
    with contextlib.suppress(FileNotFoundError):
        reader_mark(paths, spec.id).unlink()
