"""`sdctr exec`: a command in a running container, confined as the container's own command is.

Three steps, and only the last process is ever inside the container's PID namespace:

1. The CLI (`exec_in`) takes a pidfd of the container's PID 1 and checks, while that process is
   still alive, that it is in the unit's cgroup: from here on the process is named by the pidfd,
   never by a PID that may have been reused. It then re-executes itself as a sealed memfd copy of
   the Python interpreter (runc's answer to CVE-2019-5736, below); that exec closes the D-Bus
   connection and every descriptor but stdio, the pidfd and the request.
2. The helper (`helper`, still the CLI's PID, outside the container's PID namespace) becomes
   non-dumpable, joins the unit's cgroups (or fails), the namespaces of PID 1 through the pidfd
   and its root; with -t it opens a pty of the container's own devpts; it forks, then relays the
   terminal and signals and waits. With -d it waits only for the child's exec (an error line
   comes back on a close-on-exec pipe) and leaves: the command is then an orphan of the
   container's PID namespace, reaped by the container's PID 1.
3. The child: a session of its own (with -t the container's pty is its controlling terminal, so
   TIOCSTI reaches only that pty, never the caller's terminal), no descriptor above 2, the
   container's user, capabilities, no_new_privs and seccomp filter; then exec. It is
   non-dumpable (inherited) until that exec: the container cannot ptrace it or read its memory.

Why a memfd: a process in the container's PID namespace is visible to the container, and its
/proc/<pid>/exe leads to its binary. Exec'ing the target first is not enough: a target script
`#!/proc/self/exe` makes the kernel resolve its interpreter through the exec'ing process's own
exe, so the container would run (and could then write, CVE-2019-5736) the host's python3. Here
that exe is an anonymous, sealed copy: writing it fails, and nothing on the host runs it again.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import signal
import sys
import termios
import tty as ttymod
from pathlib import Path

from sdctr import cgroups, linux
from sdctr.init import sealed
from sdctr.log import EXIT_SDCTR, SdctrError, describe, report
from sdctr.spec import ContainerSpec, env_mapping, merge_env

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

# For setns with /proc/<pid>/ns descriptors (before Linux 5.8): the mount namespace last, as
# after it /proc paths of the host are no longer ours to open.
NAMESPACES = (("cgroup", linux.CLONE_NEWCGROUP), ("ipc", linux.CLONE_NEWIPC),
              ("uts", linux.CLONE_NEWUTS), ("net", linux.CLONE_NEWNET),
              ("pid", linux.CLONE_NEWPID), ("mnt", linux.CLONE_NEWNS))
MEMFD_NAME = "sdctr-exec"  # what /proc/<pid>/exe of an exec'ing process reads: /memfd:sdctr-exec


# --- the CLI: find PID 1, then become the sealed helper ------------------------------------------

def exec_in(spec: ContainerSpec, pid: int, unit: dict[str, Any], command: list[str], *,
            env: list[str], workdir: str | None, user: str | None, tty: bool,
            interactive: bool, detach: bool = False) -> NoReturn:
    if not command:
        raise SdctrError("exec needs a command", hint="example: sdctr exec web sh")
    cgroup = unit.get("ControlGroup", "")
    if not cgroup or not pid:
        raise SdctrError(f"container {spec.short_id} is not running (systemd names no main process)")
    leader = Leader.find(pid, cgroup)
    request = {"spec": spec.to_json(), "pid": leader.pid, "pidfd": leader.pidfd,
               "starttime": leader.starttime, "cgroup": cgroup, "command": command, "env": env,
               "workdir": workdir, "user": user, "tty": tty, "interactive": interactive,
               "detach": detach}
    _become_helper(request, leader.pidfd)


def _become_helper(request: dict[str, Any], pidfd: int | None) -> NoReturn:
    """Re-executes this process as the helper: a sealed memfd copy of our interpreter, given the
    request on a memfd (argv is world-readable in /proc, and the environment may be secret)."""
    # the interpreter running us, whatever its name
    interpreter = sealed.sealed_copy("/proc/self/exe", MEMFD_NAME)
    payload = os.memfd_create("sdctr-exec-request", 0)  # inherited by the helper
    os.write(payload, json.dumps(request).encode())
    os.lseek(payload, 0, os.SEEK_SET)
    keep = [payload] + ([pidfd] if pidfd is not None else [])
    # Everything else of ours (the bus connection, the record lock, a journal) closes at exec.
    linux.close_range(3, flags=linux.CLOSE_RANGE_CLOEXEC)
    for fd in keep:
        os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    package_parent = str(Path(__file__).resolve().parents[2])
    bootstrap = ("import sys; sys.path.insert(0, sys.argv[1]); from sdctr.init.enter import helper; "
                 "sys.exit(helper(int(sys.argv[2])))")
    # -S -s: no site-packages (sdctr needs only the standard library); PYTHONHOME because the
    # copy's path tells Python nothing about where its library lives.
    environment = {"PYTHONHOME": f"{sys.base_prefix}:{sys.base_exec_prefix}",
                   "PYTHONDONTWRITEBYTECODE": "1"}
    os.execve(interpreter, [MEMFD_NAME, "-S", "-s", "-c", bootstrap, package_parent, str(payload)],
              environment)


class Leader:
    """The container's PID 1: by a pidfd where the kernel has one (Linux 5.3), else by PID and
    start time (a reused PID has another)."""

    def __init__(self, pid: int, pidfd: int | None, starttime: int):
        self.pid, self.pidfd, self.starttime = pid, pidfd, starttime

    @classmethod
    def find(cls, pid: int, cgroup: str) -> Leader:
        pidfd = None
        try:
            pidfd = linux.pidfd_open(pid)
        except OSError as e:
            if e.errno == errno.ESRCH:
                raise _gone(pid) from None
            if e.errno != errno.ENOSYS:
                raise
        leader = cls(pid, pidfd, _starttime(pid))
        if not _in_cgroup(pid, cgroup):
            raise SdctrError(f"process {pid} is not in the container's cgroup {cgroup}",
                             hint="the container is restarting or gone: see 'sdctr ps -a'")
        leader.check()  # still alive: the /proc/<pid> just read was its
        return leader

    def check(self) -> None:
        alive = (linux.pidfd_alive(self.pidfd) if self.pidfd is not None
                 else _starttime(self.pid) == self.starttime)
        if not alive:
            raise _gone(self.pid)

    def open_root_and_namespaces(self) -> tuple[int, list[int]]:
        """Its root and, for a kernel without setns(pidfd), its namespaces: opened by PID, then
        checked to be its while it is still alive."""
        opened: list[int] = []
        try:
            opened.append(os.open(f"/proc/{self.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            for name, _ in NAMESPACES:
                opened.append(os.open(f"/proc/{self.pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC))
            self.check()
        except BaseException as e:
            for fd in opened:
                os.close(fd)
            if isinstance(e, FileNotFoundError):
                raise _gone(self.pid) from None
            raise
        return opened[0], opened[1:]

    def enter(self, spaces: list[int]) -> None:
        if self.pidfd is not None:
            try:  # all namespaces at once, of exactly that process (Linux 5.8)
                linux.setns(self.pidfd, _ALL_NAMESPACES)
                return
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
        for fd in spaces:
            linux.setns(fd)


_ALL_NAMESPACES = 0
for _, _flag in NAMESPACES:
    _ALL_NAMESPACES |= _flag


def _gone(pid: int) -> SdctrError:
    return SdctrError(f"the container's PID 1 ({pid}) has exited",
                      hint="the container is restarting or gone: see 'sdctr ps -a'")


def _starttime(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after comm and state


def _in_cgroup(pid: int, cgroup: str) -> bool:
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except FileNotFoundError:
        return False
    return any(line.split(":", 2)[2] == cgroup for line in lines if line.count(":") >= 2)


# --- the helper: join, fork, relay ---------------------------------------------------------------

def helper(request_fd: int) -> int:
    try:
        return _helper(request_fd)
    except (SdctrError, OSError) as e:
        return report(e)


def _helper(request_fd: int) -> int:
    # Everything this process imports, it imports now: past setns its root is the container's.
    from sdctr.init import reaper, seccomp, standard  # noqa: F401  (run_entered's)

    # Before anything of the container's is open; the child inherits it, and exec resets it.
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    with os.fdopen(request_fd, "rb") as f:
        request = json.loads(f.read())
    spec = ContainerSpec.from_json(request["spec"])
    pidfd = request["pidfd"]
    leader = Leader(request["pid"], pidfd, request["starttime"])
    # libseccomp is loaded from the host; --privileged has no filter, as its container
    syscall_filter = None if spec.privileged else seccomp.Filter(spec.capabilities)
    cgroups.join(request["cgroup"])
    return run_entered(request, spec, leader, syscall_filter)


def run_entered(request: dict[str, Any], spec: ContainerSpec, leader: Leader, syscall_filter: Any) -> int:
    """The request's command run in the leader's namespaces and root, from a non-dumpable
    process of a sealed interpreter in the unit's cgroup (this helper, or the health check's:
    sdctr.init.health, which imported what this needs before); its wait status as an exit status."""
    from sdctr.init import reaper
    from sdctr.init import standard as init

    pidfd = leader.pidfd
    # The host's: the container's /dev/null could be a FIFO its root made, and block us.
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    root, spaces = leader.open_root_and_namespaces()
    leader.enter(spaces)
    for fd in spaces:
        os.close(fd)
    if pidfd is not None:
        os.close(pidfd)
    os.fchdir(root)
    os.chroot(".")
    os.close(root)
    detach = request.get("detach", False)
    if request["tty"]:  # the container's own devpts: the pty is the container's, not the host's
        master, slave = linux.open_pty("/dev/pts/ptmx")
        stdio = Stdio((slave, slave, slave), {} if detach else {master: 1}, [slave])
    elif detach:  # -d: nothing of ours; what it writes is discarded, as docker exec -d does
        sink = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
        stdio, master = Stdio((null, sink, sink), {}, [sink]), None
    else:
        stdio, master = Stdio.without_terminals(null, request["interactive"]), None
    if request["interactive"] and master is not None and not detach:
        stdio.routes[0] = master
    # -d: the child says through this pipe why its exec failed; a successful exec closes it
    failed_r, failed_w = os.pipe2(os.O_CLOEXEC) if detach else (-1, -1)
    signal.pthread_sigmask(signal.SIG_BLOCK, reaper.FORWARDED)
    child = os.fork()
    if child == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, reaper.FORWARDED)
        _child(request, spec, stdio.child, syscall_filter, failed_w)
    for fd in stdio.theirs:
        os.close(fd)
    if detach:
        failed = _exec_failure(failed_r, failed_w)
        if failed:
            return reaper.exit_status(os.waitpid(child, 0)[1])
        if master is not None:
            _hold_terminal(master)
        return 0
    if not stdio.routes:
        init.forward_signals(child)  # as `docker exec` forwards them
        _, status = os.waitpid(child, 0)
        return reaper.exit_status(status)
    return reaper.exit_status(_relay(stdio.routes, child, master, reaper.FORWARDED))


def _hold_terminal(master: int) -> None:
    """exec -dt: the pty's master stays open while the command runs (closed, the command would
    get SIGHUP, and EIO from its terminal), held by a child of ours that reads and discards what
    the command writes until the last of its side closes, as docker's shim holds an exec's pty.
    Forked after setns, the holder is in the container's PID namespace and the unit's cgroup:
    the container's PID 1 reaps it, and the unit's stop ends it."""
    if os.fork() == 0:
        try:
            # nothing else of ours: the caller's stdout and stderr, held, would keep its reader waiting
            if master > 0:
                linux.close_range(0, master - 1)
            linux.close_range(master + 1)
            while os.read(master, 65536):
                pass
        except OSError:  # EIO: no slave descriptor is left
            pass
        os._exit(0)
    os.close(master)


class Stdio:
    """The child's descriptors 0, 1 and 2; what the helper copies from where to where; and the
    child's ends of it, which the helper closes after the fork."""

    def __init__(self, child: tuple[int, int, int], routes: dict[int, int], theirs: list[int]):
        self.child, self.routes, self.theirs = child, routes, theirs

    @classmethod
    def without_terminals(cls, null: int, interactive: bool) -> Stdio:
        """Ours, except that a terminal is never handed in (a process holding it could read
        the administrator's keys long after exec returned, or with CAP_SYS_ADMIN TIOCSTI into
        it): a pipe we relay takes its place, as docker exec's streams do. Without -i, stdin is
        /dev/null."""
        child, routes, theirs = [null, 1, 2], {}, []
        if interactive:
            child[0] = 0
            if os.isatty(0):
                r, w = os.pipe2(os.O_CLOEXEC)
                child[0], routes[0] = r, w
                theirs.append(r)
        for fd in (1, 2):
            if fd == 2 and os.isatty(1) and os.isatty(2) and os.path.samestat(os.fstat(1), os.fstat(2)):
                child[2] = child[1]  # one pipe keeps their order, as on a terminal
            elif os.isatty(fd):
                r, w = os.pipe2(os.O_CLOEXEC)
                child[fd], routes[r] = w, fd
                theirs.append(w)
        return cls((child[0], child[1], child[2]), routes, theirs)


def _exec_failure(failed_r: int, failed_w: int) -> bool:
    """exec -d: whether the child failed before its exec (its error line goes to our stderr).
    Once the command runs we leave: the container's PID 1 reaps it, the orphan of its PID
    namespace, when it ends."""
    os.close(failed_w)
    with os.fdopen(failed_r, "rb") as f:
        why = f.read()
    os.write(2, why)
    return bool(why)


def _child(request: dict[str, Any], spec: ContainerSpec, stdio: tuple[int, int, int],
           syscall_filter: Any, failed_w: int = -1) -> NoReturn:
    from sdctr.init import standard as init

    errors = 2
    try:
        # A session of our own: the caller's terminal is not ours to TIOCSTI into.
        os.setsid()
        tty = request["tty"]
        for fd, source in enumerate(stdio):
            if source != fd:
                os.dup2(source, fd)
        if tty:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        if failed_w >= 0:  # -d: errors to the helper, on a descriptor that exec closes
            errors = 3
            if failed_w != errors:
                os.dup2(failed_w, errors, inheritable=False)
        linux.close_range(errors + 1)  # the pty's master, the namespaces, anything else of ours
        user = request["user"]
        who = init.resolve_user(user if user is not None else spec.user)
        if tty:  # as a login's terminal: its user's
            os.fchown(0, who.uid, -1)
        os.chdir(request["workdir"] or spec.workdir or "/")
        base = ["TERM=xterm"] if tty else []
        environment = merge_env(base, init.container_env(spec, who), request["env"])
        init.drop_privileges(who, spec.capabilities, within_held=spec.privileged)
        path = init.resolve_command(request["command"][0], environment)
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        _default_signals()
        if syscall_filter is not None:
            syscall_filter.load()
        os.execve(path, request["command"], env_mapping(environment))
    except SdctrError as e:
        os.write(errors, f"sdctr: error: {e}\n".encode())
        os._exit(e.status)
    except OSError as e:
        os.write(errors, f"sdctr: error: {describe(e)}\n".encode())
        os._exit(126)
    except BaseException as e:
        os.write(errors, f"sdctr: error: internal error: {e.__class__.__name__}: {e}\n".encode())
        os._exit(EXIT_SDCTR)


def _default_signals() -> None:
    """What the command starts with, as under docker exec: Python ignores SIGPIPE and SIGXFSZ,
    and a caller in the background ignored SIGINT; an ignored signal stays ignored across exec
    (and a shell may not even trap it then)."""
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):  # the real-time signals glibc keeps for itself
                pass
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _relay(routes: dict[int, int], child: int, master: int | None, forwarded: tuple[int, ...]) -> int:
    """Bytes along `routes` until the command exits and its output is read; its wait status.
    With a pty (`master`) and -i on a terminal, ours is in raw mode: ^C travels as a byte.
    Signals sent to us go to the command; SIGWINCH resizes the pty."""
    stdin = sys.stdin.fileno()
    window_from = next((fd for fd in (stdin, 1) if os.isatty(fd)), None)
    saved = termios.tcgetattr(stdin) if master is not None and 0 in routes and os.isatty(stdin) else None

    def resize(*_: object) -> None:
        if window_from is not None and master is not None:
            _copy_window_size(window_from, master)

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in forwarded:
        signal.signal(sig, resize if sig == signal.SIGWINCH else forward)
    resize()
    if saved is not None:
        ttymod.setraw(stdin)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, forwarded)
    try:
        return _pump(routes, child)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)


def _pump(routes: dict[int, int], child: int) -> int:
    sources = list(routes)
    outputs = {fd for fd in routes if fd != 0}
    status = None
    while True:
        if status is None:
            pid, wait_status = os.waitpid(child, os.WNOHANG)
            status = wait_status if pid else None
        # once the command is gone, only what it left behind (a background process of the
        # container may hold the other end open: we do not wait for it)
        ready, _, _ = select.select(sources, [], [], 0.05 if status is not None else 0.1)
        if status is not None and not outputs & set(ready):
            return status
        for fd in ready:
            data = _read(fd)
            if data:
                _write_all(routes[fd], data)
            elif fd in outputs:  # EOF, or EIO: every holder of the pty's slave closed it
                sources.remove(fd)
                outputs.discard(fd)
                if not outputs:
                    return status if status is not None else os.waitpid(child, 0)[1]
            else:  # end of our input: a pipe's end closed, or a terminal's ^D on the pty
                sources.remove(fd)
                if routes[fd] in routes:
                    _write_all(routes[fd], b"\x04")
                else:
                    os.close(routes[fd])


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _copy_window_size(src: int, dst: int) -> None:
    try:
        fcntl.ioctl(dst, termios.TIOCSWINSZ, fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        pass
