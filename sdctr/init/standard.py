"""The container's init: `sdctr init <id>`, the ExecStart= of the unit ctr-<id12>.service.

A straight line of named steps, after runc's standard_init_linux.go and rootfs_linux.go:

  parent (the unit's main process)     child (PID 1 of the new PID namespace)
  --------------------------------     ----------------------------------------------------------
  read the spec, write etc files       unshare mnt, uts, ipc (+net); take the terminal
  unshare pid (for the child)          make mounts slave; bind the rootfs; /proc, /sys, /dev,
  fork ------------------------------> volumes, /etc files; pivot_root; masked and read-only
                                       paths; hostname; workdir; read-only /
  wait for the report pipe             user; capabilities; no_new_privs; seccomp
  READY=1 + MAINPID=child, exit 0      exec the reaper (tini) by fd, which runs the command
  (or, without systemd: wait)

With a health check, a helper forked before the PID namespace is made runs it and says READY=1
after the first pass (sdctr.init.health); with --sdnotify=container the container says it.

The child reports a failure as one line "STATUS message" on a close-on-exec pipe; a successful
exec closes the pipe, so end of file without a line means the command is running. The parent
then hands the child to systemd (Type=notify, MAINPID=) and exits: no host-side waiter stays,
and the unit's cgroup holds the reaper and the workload only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import stat
import struct
import sys
import termios
from collections.abc import Iterator, Sequence
from pathlib import Path

from sdctr import inroot, linux, log, state
from sdctr.caps import ALL_CAPS, cap_number
from sdctr.init import console, journal, reaper, sealed, seccomp
from sdctr.log import EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND, EXIT_SDCTR, SdctrError, describe, report
from sdctr.paths import Paths
from sdctr.record import Record
from sdctr.spec import ContainerSpec, Device, Mount, NetworkMode, env_mapping, merge_env

# typing.TYPE_CHECKING without importing typing: the init and the hooks import this module,
# and typing is ~3 ms of each start of theirs
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Static reapers only: a dynamic one would look for its ELF interpreter inside the container.
# In this order: tini-static (Debian, EPEL); catatonit where RHEL/CentOS 9 and Fedora install it
# (package catatonit, AppStream), then podman's link to it (EL8's podman-catatonit), then a
# catatonit built by hand.
REAPERS = ("/usr/bin/tini-static", "/usr/libexec/catatonit/catatonit", "/usr/libexec/podman/catatonit",
           "/usr/bin/catatonit")
# SDCTR_INIT_REAPER=python forces the fallback (tests), or names another static reaper binary.
REAPER_ENV = "SDCTR_INIT_REAPER"
# The memfd the Python fallback runs from: the container's /proc/1/exe reads /memfd:sdctr-init.
SEALED_INIT = "sdctr-init"
HEALTH_HELPER = "sdctr-health"  # and the health check's helper's: /memfd:sdctr-health

# moby's defaults (daemon/oci_linux.go, oci/defaults.go): paths that leak host information or
# reach host hardware get nothing (a read-only tmpfs over a directory, /dev/null over a file)...
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
# ...as are each CPU's thermal throttle counters, as moby masks them (they count the host's
# throttling events: a side channel across containers).
CPU_DIR = "/sys/devices/system/cpu"
# ...and the host-wide knobs under /proc are readable but not writable.
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# (name, major, minor): the nodes every image expects (OCI runtime spec "Default Devices").
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9),
           ("tty", 5, 0))
DEV_SYMLINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore"), ("ptmx", "pts/ptmx"))
ETC_FILES = ("hostname", "hosts", "resolv.conf")
NOTIFY_SOCKET_IN = "/run/notify/notify.sock"  # podman's place for --sdnotify=container


class SetupError(SdctrError):
    """A failed step in the child; its status (125, 126, 127) becomes the container's."""


class User(Record):
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


# --- parent --------------------------------------------------------------------------------------

def run_init(paths: Paths, cid: str, sealed_python: bool = False) -> int:
    """`sealed_python`: this process already runs from the sealed copy of the interpreter."""
    try:
        reaper_path = find_reaper()
        if reaper_path is None and not sealed_python:
            # The Python fallback: this process's child stays the container's PID 1, so it must
            # not run from the host's python3 (its /proc/1/exe): once more, from a sealed copy.
            become_sealed_init(paths, cid)
        spec = state.find_by_id(paths, cid)
        if reaper_path is None:
            refuse_unsealable(spec)
        held = setup_stdio(paths, spec)
        rootfs = paths.rootfs(cid)
        if not rootfs.is_dir():
            raise SdctrError(f"the root file system of container {spec.short_id} is not mounted at "
                             f"{rootfs}", hint="the unit's ExecStartPre hook mounts it")
        write_etc_files(paths, spec)
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        checks = health_helper(paths, spec)  # forked before the PID namespace: not in it
        new_pid_namespace()
        # Held until we can forward them: a SIGTERM that came before the handlers were set would
        # kill us and orphan the container.
        signal.pthread_sigmask(signal.SIG_BLOCK, reaper.FORWARDED)
        # Under systemd the container's PID 1 is forked as systemd's own child (CLONE_PARENT):
        # its MAINPID then needs no adoption ("Supervising process N which is not our child")
        # and systemd reaps it. Without systemd we wait for it ourselves.
        sibling = "NOTIFY_SOCKET" in os.environ
        pid = linux.fork_sibling() if sibling else os.fork()
        if pid == 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, reaper.FORWARDED)
            # (the health helper's pipe too: the Python reaper never execs, the helper would wait)
            for fd in (report_r, go_w, *checks):
                os.close(fd)
            held.in_child()
            _child(spec, paths, reaper_path, report_w, go_r)
        held.in_parent()
        forward_signals(pid)
        os.close(report_w)
        os.close(go_r)
        failure = _read_report(report_r)
        if failure is not None:
            if not sibling:
                os.waitpid(pid, 0)
            raise SdctrError(failure[1], status=failure[0])
        state.record_start(paths, cid)
        try:
            notified = sd_notify(hand_over(spec, pid, bool(checks)))
        except SdctrError:  # nobody would adopt the container: it must not outlive us
            os.kill(pid, signal.SIGKILL)
            if not sibling:
                os.waitpid(pid, 0)
            raise
        # Only now may the command run: had it exited before systemd took MAINPID, systemd would
        # have refused a dead main process and reported our own exit status (0) as the
        # container's.
        os.write(go_w, b"g")
        os.close(go_w)
        registering = after_hand_over(paths, spec, pid, checks)
        if notified:
            serve_console(held, registering)
            return 0  # systemd adopts the container's PID 1 as the unit's main process
        _, status = os.waitpid(pid, 0)
        return reaper.exit_status(status)
    except (SdctrError, OSError) as e:
        return report(e)


def health_helper(paths: Paths, spec: ContainerSpec) -> list[int]:
    """For a container with a health check under systemd: the helper that runs it
    (sdctr.init.health), forked now, before the container's PID namespace exists (it is no
    process the container sees), from a sealed copy of the interpreter, as `sdctr exec`'s; it
    waits for the container's PID on a pipe, closed without one if the start fails. [the pipe's
    descriptor], or []."""
    if not spec.health_cmd or "NOTIFY_SOCKET" not in os.environ:
        return []
    r, w = os.pipe2(os.O_CLOEXEC)
    if os.fork() == 0:
        try:
            os.close(w)
            os.set_inheritable(r, True)
            _exec_sealed(HEALTH_HELPER, "sdctr.init.health", "helper",
                         [str(paths.root), str(paths.run), spec.id, str(r)])
        finally:
            os._exit(EXIT_SDCTR)
    os.close(r)
    return [w]


def hand_over(spec: ContainerSpec, pid: int, checked: bool) -> str:
    """What the init tells systemd once the command may run: its PID 1 is the main process, and
    READY=1 unless another says it: the container itself (--sdnotify=container), or the health
    check's helper after the first pass (`checked`, unless --sdnotify=ignore)."""
    if spec.sdnotify == "container":
        return f"MAINPID={pid}\nSTATUS=waiting for the container's READY=1"
    if checked and spec.sdnotify != "ignore":
        return f"MAINPID={pid}\nSTATUS=starting"
    return f"READY=1\nMAINPID={pid}"


def after_hand_over(paths: Paths, spec: ContainerSpec, pid: int, checks: list[int]) -> int | None:
    """The container's command runs: its PID to the health check's helper, which checks from now
    on; the container's registration with machined started (busctl's PID, if it runs)."""
    for fd in checks:
        os.write(fd, str(pid).encode())
        os.close(fd)
    return register_machine(paths, spec, pid)


def serve_console(held: console.Console | console.NoConsole, registering: int | None) -> None:
    """run -dt, -di: we stay for the container's terminal (or stdin), busctl reaped first so that
    it stays no zombie. Otherwise we leave now and busctl to the unit (systemd's PID 1 reaps it):
    waiting for it put busctl's whole run (its start, machined's answer) between a short
    command's end and systemd's seeing the unit's end."""
    if isinstance(held, console.Console):
        reap(registering)
        held.serve()


def reap(child: int | None) -> None:
    """busctl's end, so that it leaves no zombie while we stay (a few ms; its own timeout bounds it)."""
    if child is not None:
        _, status = os.waitpid(child, 0)
        if status:
            log.debug(f"machined did not register the container (busctl: {status:#x})")


# systemd-machined, bus-activated: its binary says it is there; busctl calls it
MACHINED = ("/usr/lib/systemd/systemd-machined", "/lib/systemd/systemd-machined")
BUSCTL = ("/usr/bin/busctl", "/bin/busctl")


def register_machine(paths: Paths, spec: ContainerSpec, pid: int) -> int | None:
    """Where systemd-machined is installed, the container as its machine (`machinectl list`,
    `status`, `copy-to`, `shell`): RegisterMachine, which takes the leader's unit (ours) as the
    machine's, and forgets the machine when that unit stops. By busctl (no D-Bus library in the
    init), once the container's command runs, from our own PID namespace, not the container's, which
    our children join since new_pid_namespace(). Its complaints (a name taken, a command already
    gone) never reach a run's terminal. busctl's PID is returned, not waited for (reap())."""
    busctl = next((p for p in BUSCTL if os.access(p, os.X_OK)), None)
    if busctl is None or not any(os.path.exists(p) for p in MACHINED) or "NOTIFY_SOCKET" not in os.environ:
        return None
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(own, linux.CLONE_NEWPID)
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        # all three to /dev/null: our stderr may be the caller's (a foreground run's, whatever
        # spec.attached says by now), where busctl's "Call failed: ... No such process" for a
        # command that ended before machined looked at it was seen (test_runfg, CI)
        quiet = [(os.POSIX_SPAWN_DUP2, null, fd) for fd in (0, 1, 2)]
        child = os.posix_spawn(busctl, machine_argv(spec, busctl, pid, str(paths.rootfs(spec.id))), {},
                               file_actions=quiet)
        os.close(null)
        return child
    except OSError as e:  # the container runs on without
        log.debug(f"registering with machined: {describe(e)}")
        return None
    finally:
        os.close(own)


def machine_argv(spec: ContainerSpec, busctl: str, pid: int, root: str) -> list[str]:
    """RegisterMachine: named as the container (a host name: `_` as `-`), its id the container's
    first 16 bytes, service sdctr, class container, the container's PID 1, its root."""
    uuid = [str(int(spec.id[i:i + 2], 16)) for i in range(0, 32, 2)]
    return [busctl, "--quiet", "call", "org.freedesktop.machine1", "/org/freedesktop/machine1",
            "org.freedesktop.machine1.Manager", "RegisterMachine", "sayssus", machine_name(spec),
            "16", *uuid, "sdctr", "container", str(pid), root]


def machine_name(spec: ContainerSpec) -> str:
    """machined's names are host names: Docker's generated ones have underscores."""
    name = spec.name.replace("_", "-")
    valid = name and len(name) <= 64 and name[0].isalnum() and all(c.isalnum() or c in "-." for c in name)
    return name if valid else spec.short_id


def refuse_unsealable(spec: ContainerSpec) -> None:
    """The Python fallback's PID 1 maps the host's libc and extension modules, which a container
    holding CAP_SYS_PTRACE (past non-dumpable) and CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE (for
    /proc/1/map_files) could open for writing: no sealed copy covers them. A static reaper maps
    none. --privileged is unconfined by the user's choice already (every device)."""
    held = set(spec.capabilities)
    if spec.privileged or "CAP_SYS_PTRACE" not in held or not held & MAP_FILES_CAPS:
        return
    raise SdctrError("without a static reaper, a container cannot hold CAP_SYS_PTRACE with "
                     "CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE: the host's libraries mapped by the "
                     "Python fallback init would be writable from it (/proc/1/map_files)",
                     hint="install tini-static (Debian) or catatonit (RHEL), or drop one of them")


def setup_stdio(paths: Paths, spec: ContainerSpec) -> console.Console | console.NoConsole:
    """stdout and stderr apart in the journal, for a foreground run too (sdctr.init.journal);
    for run -dt and -di, a terminal or stdin kept open for `attach` (sdctr.init.console)."""
    # (a foreground run's stdio is the caller's, no journal stream: the CLI journals a copy; but
    # where systemd cannot pass it descriptors, --unit-file-mode, the unit's stream is ours)
    journal.split_streams(spec.name, spec.unit)
    if spec.attached and spec.tty:  # run -it: its CLI holds the pty until it detaches (^P^Q)
        return console.Console(paths, spec.id, True, adopt_for=(spec.name, spec.unit))
    if spec.attached or not (spec.tty or spec.interactive):
        return console.NoConsole()
    return console.Console(paths, spec.id, spec.tty)



MAP_FILES_CAPS = frozenset({"CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE"})


def become_sealed_init(paths: Paths, cid: str) -> NoReturn:
    """Re-executes the init as a sealed memfd copy of its interpreter (sdctr.init.sealed), as
    `sdctr exec` does its helper: same paths, container and --debug, same environment (the
    NOTIFY_SOCKET, the journal's JOURNAL_STREAM) and descriptors (stdio: systemd's journal
    streams or the terminal; nothing of ours is open yet). The copy enters at sealed_init(),
    which never comes back here: no loop."""
    _exec_sealed(SEALED_INIT, "sdctr.init.standard", "sealed_init", [str(paths.root), str(paths.run), cid])


def _exec_sealed(name: str, module: str, function: str, args: list[str]) -> NoReturn:
    """`module.function(args + [--debug])` in a sealed copy of our interpreter, named `name`."""
    interpreter = sealed.sealed_copy("/proc/self/exe", name)
    sys.stdout.flush()
    sys.stderr.flush()
    package_parent = str(Path(__file__).resolve().parents[2])
    bootstrap = (f"import sys; sys.path.insert(0, sys.argv[1]); "
                 f"from {module} import {function}; {function}(sys.argv[2:])")
    # -S -s: no site-packages (the init needs only the standard library); PYTHONHOME because the
    # copy's path tells Python nothing about where its library lives.
    environment = {**os.environ, "PYTHONHOME": f"{sys.base_prefix}:{sys.base_exec_prefix}",
                   "PYTHONDONTWRITEBYTECODE": "1"}
    os.execve(interpreter, [name, "-S", "-s", "-c", bootstrap, package_parent, *args,
                            *(["--debug"] if log.debugging() else [])], environment)


def sealed_init(argv: Sequence[str]) -> NoReturn:
    """The init again, in the sealed copy: `ROOT RUN ID [--debug]`. Out as sdctr.main.entry()
    leaves, without the interpreter's teardown."""
    root, run, cid, *flags = argv
    log.set_debug("--debug" in flags)
    status = run_init(Paths(Path(root), Path(run)), cid, sealed_python=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


def write_etc_files(paths: Paths, spec: ContainerSpec) -> None:
    """hostname, hosts and resolv.conf for the container, kept in its record directory and
    bind-mounted over the image's own (as Docker does), so the image is never modified. Written
    under the record's lock through its directory, which is never created here: a record `rm`
    removed meanwhile fails the start instead of coming back as a directory without a config."""
    hostname = spec.hostname_or_id
    hosts = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
             f"127.0.1.1\t{hostname}\n")
    # --add-host's (host-gateway resolved at create: sdctr.runtime.lifecycle)
    hosts += "".join(f"{a}\t{n}\n" for n, _, a in (h.partition(":") for h in spec.add_hosts))
    try:
        host_resolv = Path("/etc/resolv.conf").read_text()
    except OSError:
        host_resolv = ""
    if spec.network is NetworkMode.NONE:  # no route to any nameserver: keep search/options only
        kept = [ln for ln in host_resolv.splitlines() if not ln.strip().startswith("nameserver")]
        resolv = "# --network none: no DNS servers\n" + "".join(f"{ln}\n" for ln in kept)
    else:
        resolv = host_resolv
    resolv = spec.custom_resolv_conf(resolv)
    files: tuple[tuple[str, str], ...] = (("hostname", f"{hostname}\n"), ("hosts", hosts),
                                          ("resolv.conf", resolv))
    if spec.network is NetworkMode.BRIDGE:  # hosts and resolv.conf: the netup hook's (sdctr.net.setup)
        files = files[:1]
    elif spec.network is NetworkMode.CONTAINER:  # the joined container's (sdctr.net.joined)
        files = ()
    try:
        with state.record_locked(paths, spec.id) as d:
            for name, text in files:
                _write_file_atomic(d, name, text.encode())
    except state.NoSuchContainer:
        raise SdctrError(f"the record of container {spec.short_id} was removed while it started") from None


def _write_file_atomic(dir_fd: int, name: str, data: bytes) -> None:
    """`name` in the directory `dir_fd`, whole or not at all: 0644 (the container's users read
    it) whatever the umask, through a temp file and a rename."""
    tmp = f".{name}.tmp{os.getpid()}"  # swept by state.sweep_dead_writers if we are killed
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644,
                 dir_fd=dir_fd)
    try:
        try:
            os.fchmod(fd, 0o644)
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def find_reaper() -> str | None:
    """The host's static tini or catatonit; None means the Python fallback (sdctr.reaper)."""
    chosen = os.environ.get(REAPER_ENV)
    if chosen == "python":
        return None
    for path in (chosen,) if chosen else REAPERS:
        if os.access(path, os.X_OK) and _is_static_elf(path):
            return path
    return None


def _is_static_elf(path: str) -> bool:
    """No PT_INTERP program header: the binary runs in a root without the host's libc."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # ELFCLASS64
            return False
        end = "<" if head[5] == 1 else ">"
        phoff, = struct.unpack(end + "Q", head[32:40])
        phentsize, phnum = struct.unpack(end + "HH", head[54:58])
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack(end + "I", table[i:i + 4])[0] != 3  # PT_INTERP
               for i in range(0, len(table), phentsize))


def new_pid_namespace() -> None:
    # Only the children forked from now on are in it; we stay where systemd sees us.
    linux.unshare(linux.CLONE_NEWPID)


def netns_to_join(paths: Paths, spec: ContainerSpec) -> Path | None:
    """The pinned namespace the container's init joins: its own on a bridge network (the netup
    hook's, sdctr.net.setup), or with --network container:NAME NAME's (sdctr.net.joined); None
    for the host's, or for a new one (--network none)."""
    if spec.network is NetworkMode.BRIDGE:
        return paths.netns(spec.id)
    if spec.network is not NetworkMode.CONTAINER:
        return None
    try:
        other = state.find_by_id(paths, spec.network_container)
    except state.NoSuchContainer:
        raise SdctrError(f"container {spec.network_container[:12]}, whose network this one joins, "
                         "no longer exists") from None
    if other.network is NetworkMode.HOST:
        return None
    pin = paths.netns(other.id)
    if not pin.exists():
        raise SdctrError(f"--network container:{other.name}: container {other.name} is not running",
                         hint=f"start it first: sdctr start {other.name}")
    return pin


def join_pinned_netns(pin: Path) -> None:
    # before the mount namespace is unshared: the pin is a mount of the host's namespace
    fd = os.open(pin, os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(fd, linux.CLONE_NEWNET)
    finally:
        os.close(fd)


def enter_namespaces(spec: ContainerSpec) -> None:
    """The child's namespaces. The parent stays in the host's mount and network namespaces: the
    pivot_root(2) the child makes moves every process of its mount namespace whose root is the
    old root (the parent would end up in the container's root), and an abstract NOTIFY_SOCKET
    address exists only in the host's network namespace."""
    flags = linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
    # A cgroup namespace rooted at the unit's cgroup: /proc/self/cgroup shows "/", not the
    # host's hierarchy (Docker's default on cgroup v2; Linux >= 4.6, absent on RHEL 7's 3.10).
    if os.path.exists("/proc/self/ns/cgroup"):
        flags |= linux.CLONE_NEWCGROUP
    if spec.network is NetworkMode.NONE:
        flags |= linux.CLONE_NEWNET
    linux.unshare(flags)
    if spec.network is NetworkMode.NONE:
        linux.set_link_up("lo")


READY_LINE = b"0 ready\n"


def _read_report(fd: int) -> tuple[int, str] | None:
    """The child's first line: READY_LINE once it is set up and waits for the go, else why it
    failed (and it closed the pipe by exiting)."""
    with open(fd, "rb") as f:
        line = f.readline()
    if line == READY_LINE:
        return None
    text = line.decode(errors="replace").strip() or "the container's init exited during set-up"
    status, _, message = text.partition(" ")
    return (int(status) if status.isdigit() else EXIT_SDCTR), message or text


def await_go(report_fd: int, go_fd: int) -> None:
    """Set up, and waiting for the parent to hand us to systemd; then the command may run."""
    os.write(report_fd, READY_LINE)
    if os.read(go_fd, 1) != b"g":  # the parent died: nobody will adopt the container
        os._exit(EXIT_SDCTR)
    os.close(go_fd)


def forward_signals(pid: int) -> None:
    """Our signals, passed on to `pid`: without systemd (tests, debugging) the init stays as the
    waiter; `sdctr exec` waits for its command the same way."""
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for sig in reaper.FORWARDED:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, reaper.FORWARDED)


def sd_notify(message: str) -> bool:
    """sd_notify(3), then a BARRIER=1 so that systemd has read READY=1 and MAINPID= before our
    exit reaches it; otherwise it may see the main process exit first and fail the unit. A
    systemd without BARRIER= support still closes the received fd, which ends the wait too."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    try:
        _notify(address, message)
    except OSError as e:
        raise SdctrError(f"cannot notify systemd at NOTIFY_SOCKET={address}: {e.strerror}") from e
    return True


def _notify(address: str, message: str) -> None:
    if address.startswith("@"):
        address = "\0" + address[1:]
    s = linux.datagram_socket(linux.AF_UNIX)
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        s.connect(address)
        s.sendall(message.encode())
        s.sendmsg([b"BARRIER=1"], [(linux.SOL_SOCKET, linux.SCM_RIGHTS, struct.pack("i", w))])
        os.close(w)
        w = -1
        poller = select.poll()
        poller.register(r, 0)  # POLLHUP is always reported
        poller.poll(5000)
    finally:
        s.close()
        os.close(r)
        if w >= 0:
            os.close(w)


# --- child: PID 1 of the container ---------------------------------------------------------------

def _child(spec: ContainerSpec, paths: Paths, reaper_path: str | None, report_fd: int,
           go_fd: int) -> NoReturn:
    try:
        _container_init(spec, paths, reaper_path, report_fd, go_fd)
    except SdctrError as e:
        _report(report_fd, e.status, str(e))
    except OSError as e:
        _report(report_fd, EXIT_SDCTR, describe(e))
    except BaseException as e:
        _report(report_fd, EXIT_SDCTR, f"internal error: {e.__class__.__name__}: {e}")
    os._exit(EXIT_SDCTR)


def _report(fd: int, status: int, message: str) -> NoReturn:
    with contextlib.suppress(OSError):
        os.write(fd, f"{status} {message}\n".encode())
    os._exit(status)


def _container_init(spec: ContainerSpec, paths: Paths, reaper_path: str | None,
                    report_fd: int, go_fd: int) -> NoReturn:
    pin = netns_to_join(paths, spec)
    if pin is not None:
        join_pinned_netns(pin)
    own_cgroups = unit_cgroups()  # before the cgroup namespace: it would show us "/"
    enter_namespaces(spec)
    take_terminal(spec.tty)
    rootfs = prepare_rootfs(str(paths.rootfs(spec.id)))
    reaper_fd = open_reaper(reaper_path) if reaper_path else None
    # --privileged, as Docker's: no filter, no masks, /sys writable, the host's device nodes
    syscall_filter = None if spec.privileged else seccomp.Filter(spec.capabilities)
    mount_proc_and_sys(rootfs, readonly_sys=not spec.privileged)
    mount_cgroups(rootfs, own_cgroups, readonly=not spec.privileged)
    devices = (*host_devices("/dev"), *spec.devices) if spec.privileged else spec.devices
    mount_dev(rootfs, spec.tty, devices)
    mount_volumes(rootfs, spec.mounts, paths)
    # --network container:NAME: NAME's files, as Docker shares them (sdctr.net.joined)
    joined = spec.network is NetworkMode.CONTAINER
    mount_etc_files(rootfs, paths.container_dir(spec.network_container if joined else spec.id))
    if spec.sdnotify == "container":
        bind_notify_socket(rootfs, os.environ.get("NOTIFY_SOCKET", ""))
    pivot_into(rootfs)
    if not spec.privileged:
        mask_paths((*MASKED_PATHS, *thermal_throttle_paths(CPU_DIR)))
        make_readonly(READONLY_PATHS)
    linux.sethostname(spec.hostname_or_id)
    os.makedirs(spec.workdir, mode=0o755, exist_ok=True)  # as Docker does for a missing WORKDIR
    if spec.read_only:
        remount_readonly("/")
    user = resolve_user(spec.user)
    os.chdir(spec.workdir)
    env = container_env(spec, user)
    drop_privileges(user, spec.capabilities, within_held=spec.privileged)
    path = resolve_command(spec.command[0], env)
    linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    if syscall_filter is not None:
        syscall_filter.load()
    await_go(report_fd, go_fd)
    if reaper_fd is None:
        reaper.run(path, spec.command, env, report_fd, spec.tty)
    # tini (and catatonit) take the command after "--" and run it with our environment.
    os.execve(reaper_fd, [os.path.basename(str(reaper_path)), "--", *spec.command],
              env_mapping(env))


def take_terminal(tty: bool) -> None:
    """A session of our own, detached from the caller's terminal; with --tty the pty slave the
    CLI passed as stdin becomes the controlling terminal, so ^C and job control reach the
    command."""
    try:
        os.setsid()
    except OSError as e:
        raise SetupError(f"setsid: {e.strerror}") from e
    if tty:
        if not os.isatty(0):
            raise SetupError("--tty was asked for but the init's stdin is not a terminal")
        # 1: take it even if it is some other session's controlling terminal (we still hold
        # CAP_SYS_ADMIN here); the CLI that made the pty never uses it as its own.
        try:
            fcntl.ioctl(0, termios.TIOCSCTTY, 1)
        except OSError as e:
            raise SetupError(f"cannot make the pty the container's terminal: {e.strerror}") from e


def prepare_rootfs(rootfs: str) -> str:
    # Mount events must not travel back to the host: a host with systemd has / shared, and
    # every mount we make would appear in every other namespace (runc's default rslave).
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    # pivot_root(2) needs new_root to be a mount point; the hook's mount is one, a directory
    # (tests, debugging) is not until bound onto itself.
    linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
    return rootfs


def open_reaper(path: str) -> int:
    """A sealed memfd copy of the host's reaper, to exec after pivot_root: the container's
    /proc/1/exe is then that copy, never the host's binary (sdctr.init.sealed). Made before the
    seccomp filter and the capability drop, and charged to the container's memory cgroup."""
    return sealed.sealed_copy(path, os.path.basename(path))


@contextlib.contextmanager
def opened_in_root(root: str, path: str, create: str | None = None,
                   no_symlinks: bool = False) -> Iterator[str]:
    """Yields a /proc/self/fd path to `path` resolved inside `root`, as if root were "/"
    (sdctr.inroot's walk: no "..", link or swap leads out of it), so that mounting onto it hits
    exactly what was checked. create="dir" or "file" makes what is missing; no_symlinks refuses
    any symlink on the way (for /proc and /sys)."""
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd, _ = inroot.walk(rootfd, path, create=create, no_symlinks=no_symlinks)
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror} (in {root})") from None
    finally:
        os.close(rootfd)
    try:
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def mount_in_root(root: str, target: str, source: str | None, fstype: str | None, flags: int,
                  *, data: str | None = None, create: str = "dir", no_symlinks: bool = False) -> None:
    with opened_in_root(root, target, create=create, no_symlinks=no_symlinks) as where:
        linux.mount(source, where, fstype, flags, data)


def mount_proc_and_sys(rootfs: str, readonly_sys: bool = True) -> None:
    nosuid_nodev_noexec = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    # Our PID namespace's proc: the host's processes are not in it.
    mount_in_root(rootfs, "/proc", "proc", "proc", nosuid_nodev_noexec, no_symlinks=True)
    # Read-only always: writable sysfs reaches host devices and kernel knobs, even with the
    # host's network namespace (then it also shows the host's interfaces, as Docker's does).
    # (--privileged alone has it writable, as Docker's.)
    mount_in_root(rootfs, "/sys", "sysfs", "sysfs",
                  nosuid_nodev_noexec | (linux.MS_RDONLY if readonly_sys else 0), no_symlinks=True)


CGROUP_FS = "/sys/fs/cgroup"


def unit_cgroups(cgroup: str | None = None, mountinfo: str | None = None) -> list[tuple[str, str]]:
    """(host directory, where under /sys/fs/cgroup) of the unit's own cgroup in each hierarchy
    mounted here that has it (v2: the one; v1: those whose controllers the unit uses: in the
    others we sit in a slice or the root, which are not the container's to see). `cgroup`,
    `mountinfo`: those files' text (default: ours)."""
    if cgroup is None:
        cgroup = Path("/proc/self/cgroup").read_text()
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    where: dict[str, str] = {}  # controllers ("memory", "cpu,cpuacct", "name=systemd", "": v2) -> path
    for line in cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        where[controllers] = path
    own = where.get("name=systemd") or where.get("")
    if not own or own == "/":
        return []
    found: dict[str, str] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        tail = fields[fields.index("-") + 1:]
        root, point, fstype = fields[3], fields[4], tail[0]
        if fstype not in ("cgroup", "cgroup2") or not (point + "/").startswith(CGROUP_FS + "/"):
            continue
        options = set(tail[2].split(","))
        key = "" if fstype == "cgroup2" else next(
            (k for k in where if k and set(k.split(",")) <= options), None)
        if key is None or where.get(key) != own or not (own + "/").startswith(root.rstrip("/") + "/"):
            continue
        found[point[len(CGROUP_FS):]] = point + own[len(root.rstrip("/")):]
    return [(directory, sub) for sub, directory in found.items()]


def mount_cgroups(rootfs: str, own: Sequence[tuple[str, str]], readonly: bool) -> None:
    """/sys/fs/cgroup shows the container's own cgroup, as Docker's does, so that programs see
    their limits (memory.max, or v1's memory/memory.limit_in_bytes): bind mounts of the unit's
    directories, read-only (--privileged: writable, as Docker's); on v1 in a tmpfs of their own,
    with the host's symlinks between them (cpu -> cpu,cpuacct)."""
    if not own:
        return
    flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC | (linux.MS_RDONLY if readonly else 0)
    top = f"{rootfs}{CGROUP_FS}"  # in our own sysfs, mounted just now
    v1 = all(sub for _, sub in own)
    if v1:
        linux.mount("tmpfs", top, "tmpfs", flags & ~linux.MS_RDONLY, "mode=755,size=64k")
    for directory, sub in own:
        if v1:
            os.makedirs(f"{top}{sub}", mode=0o755, exist_ok=True)
        linux.mount(directory, f"{top}{sub}", None, linux.MS_BIND)
        linux.mount(None, f"{top}{sub}", None, linux.MS_BIND | linux.MS_REMOUNT | flags)
    if v1:
        mounted = {sub.lstrip("/") for _, sub in own}
        with contextlib.suppress(OSError):
            for entry in os.scandir(CGROUP_FS):
                if entry.is_symlink() and os.readlink(entry.path) in mounted:
                    os.symlink(os.readlink(entry.path), f"{top}/{entry.name}")
        linux.mount(None, top, None, linux.MS_REMOUNT | flags)


def mount_dev(rootfs: str, tty: bool, devices: Sequence[Device] = ()) -> None:
    mount_in_root(rootfs, "/dev", "tmpfs", "tmpfs", linux.MS_NOSUID | linux.MS_STRICTATIME,
                  data="mode=755,size=65536k", no_symlinks=True)
    dev = f"{rootfs}/dev"  # a tmpfs of our own from here on: nothing in it is the image's
    os.mkdir(f"{dev}/pts", 0o755)
    # newinstance: the container's ptys are its own, not the host's /dev/pts (and ptmx must
    # point into it, hence the symlink below and ptmxmode for non-root users).
    linux.mount("devpts", f"{dev}/pts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620,gid=5")
    os.mkdir(f"{dev}/shm", 0o1777)
    linux.mount("shm", f"{dev}/shm", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
                "mode=1777,size=65536k")
    os.mkdir(f"{dev}/mqueue", 0o755)
    try:  # the IPC namespace's message queues; absent from kernels without POSIX_MQUEUE
        linux.mount("mqueue", f"{dev}/mqueue", "mqueue", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    except OSError as e:
        if e.errno != errno.ENODEV:
            raise
    for name, major, minor in DEVICES:
        node = f"{dev}/{name}"
        try:
            os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(major, minor))
            os.chmod(node, 0o666)  # mknod obeys the umask
        except PermissionError:  # no CAP_MKNOD (a user namespace): share the host's node
            Path(node).touch(0o666)
            linux.mount(f"/dev/{name}", node, None, linux.MS_BIND)
    for name, target in DEV_SYMLINKS:
        os.symlink(target, f"{dev}/{name}")
    for device in devices:
        make_device(dev, device)
    if tty:
        Path(f"{dev}/console").touch(0o600)
        linux.mount(os.ttyname(0), f"{dev}/console", None, linux.MS_BIND)


def make_device(dev: str, device: Device) -> None:
    """--device's node (or, --privileged, a host one) in our /dev tmpfs, as the host has it:
    kind, numbers, mode, owner (runc's mknodDevice). Whether it opens is the device cgroup's
    to say. It replaces a default node of the same name; a path through a symlink of ours
    (/dev/fd/...) or onto a directory is refused."""
    where = dev
    names = device.path.split("/")[2:]  # "/dev/a/b": ["a", "b"]
    for name in names[:-1]:
        where = f"{where}/{name}"
        with contextlib.suppress(FileExistsError):
            os.mkdir(where, 0o755)
        if not stat.S_ISDIR(os.lstat(where).st_mode):
            raise SetupError(f"--device {device.host_path}:{device.path}: {where[len(dev) - 4:]} is "
                             "not a directory in the container's /dev")
    node = f"{where}/{names[-1]}"
    with contextlib.suppress(FileNotFoundError):
        if not (stat.S_ISCHR(os.lstat(node).st_mode) or stat.S_ISBLK(os.lstat(node).st_mode)):
            raise SetupError(f"--device {device.host_path}:{device.path}: the container's "
                             f"{device.path} is not a device node to replace")
        os.unlink(node)
    kind = stat.S_IFBLK if device.kind == "b" else stat.S_IFCHR
    os.mknod(node, kind | device.mode, os.makedev(device.major, device.minor))
    os.chown(node, device.uid, device.gid)
    os.chmod(node, device.mode)  # mknod obeys the umask


# what --privileged does not copy from the host's /dev: ours, or the host's own terminals
_HOST_DEV_SKIP = frozenset(("pts", "shm", "mqueue", "console", "ptmx", "tty", "fd", "stdin", "stdout",
                            "stderr", "core", *(name for name, _, _ in DEVICES)))


def host_devices(top: str) -> list[Device]:
    """The host's device nodes under /dev, as Docker's --privileged lists them
    (oci.DevicesFromPath): every character and block node, symlinks not followed."""
    found: list[Device] = []
    for path, dirs, files in os.walk(top):
        if path == top:
            dirs[:] = [d for d in dirs if d not in _HOST_DEV_SKIP]
        for name in files:
            if path == top and name in _HOST_DEV_SKIP:
                continue
            full = f"{path}/{name}"
            try:
                st = os.lstat(full)
            except OSError:  # gone meanwhile
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                found.append(Device(full, f"/dev/{full[len(top) + 1:]}", "rwm",
                                    "c" if stat.S_ISCHR(st.st_mode) else "b", os.major(st.st_rdev),
                                    os.minor(st.st_rdev), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid))
    return found


def mount_volumes(rootfs: str, mounts: Sequence[Mount], paths: Paths | None = None) -> None:
    for m in mounts:
        if m.kind == "tmpfs":
            flags, data = tmpfs_options(m.options)
            mount_in_root(rootfs, m.target, "tmpfs", "tmpfs", flags, data=data)
            continue
        source = m.source
        if m.kind == "volume":
            if paths is None:
                raise SetupError(f"volume {m.source}: no store to find it in")
            source = str(paths.volume_data(m.source))
            os.makedirs(source, 0o755, exist_ok=True)
            if m.options != "nocopy":
                copy_up(rootfs, m.target, source)
        elif not os.path.exists(source):  # docker run -v creates a missing host directory
            os.makedirs(source, 0o755)
        kind = "dir" if os.path.isdir(source) else "file"
        mount_in_root(rootfs, m.target, source, None, linux.MS_BIND | linux.MS_REC, create=kind)
        if m.readonly:
            # Reopened: the bind now covers the target, and the remount must hit the bind.
            with opened_in_root(rootfs, m.target) as where:
                remount_readonly_recursive(where)


# Docker's --tmpfs defaults: no set-id programs, no device nodes, nothing to execute
_TMPFS_FLAGS = {"ro": (linux.MS_RDONLY, 0), "rw": (0, linux.MS_RDONLY),
                "nosuid": (linux.MS_NOSUID, 0), "suid": (0, linux.MS_NOSUID),
                "nodev": (linux.MS_NODEV, 0), "dev": (0, linux.MS_NODEV),
                "noexec": (linux.MS_NOEXEC, 0), "exec": (0, linux.MS_NOEXEC),
                "noatime": (linux.MS_NOATIME, 0), "atime": (0, linux.MS_NOATIME)}


def tmpfs_options(options: str) -> tuple[int, str]:
    """mount(2)'s flags and data for a tmpfs's options (checked by sdctr.options)."""
    flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    data = []
    for opt in filter(None, options.split(",")):
        if opt in _TMPFS_FLAGS:
            add, clear = _TMPFS_FLAGS[opt]
            flags = (flags | add) & ~clear
        else:
            data.append(opt)
    return flags, ",".join(data)


def copy_up(rootfs: str, target: str, volume: str) -> None:
    """Docker's copy-up: an empty volume gets what the image has at its mount point (owners,
    modes and symbolic links as they are; the path is resolved inside the rootfs)."""
    if os.listdir(volume):
        return
    try:
        with opened_in_root(rootfs, target) as where:
            if not os.path.isdir(where):
                return
            st = os.stat(where)
            os.chown(volume, st.st_uid, st.st_gid)
            os.chmod(volume, stat.S_IMODE(st.st_mode))
            _copy_tree(where, volume)
    except FileNotFoundError:
        return


def _copy_tree(src: str, dst: str) -> None:
    import shutil  # only for a volume's first start

    for entry in os.scandir(src):
        to = os.path.join(dst, entry.name)
        st = entry.stat(follow_symlinks=False)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), to)
        elif entry.is_dir(follow_symlinks=False):
            os.mkdir(to)
            _copy_tree(entry.path, to)
            os.chmod(to, stat.S_IMODE(st.st_mode))
        elif entry.is_file(follow_symlinks=False):
            shutil.copy2(entry.path, to, follow_symlinks=False)
        else:  # devices, fifos, sockets: Docker's copy-up skips nothing, but an image's are rare
            continue
        os.lchown(to, st.st_uid, st.st_gid)


def mount_etc_files(rootfs: str, record_dir: Path) -> None:
    for name in ETC_FILES:
        mount_in_root(rootfs, f"/etc/{name}", str(record_dir / name), None, linux.MS_BIND,
                      create="file")


def bind_notify_socket(rootfs: str, socket: str) -> None:
    """--sdnotify=container: systemd's notify socket at NOTIFY_SOCKET_IN, as podman's, for the
    container to say READY=1 (and STATUS=, WATCHDOG=1) itself (the unit has NotifyAccess=all;
    systemd takes a message from any process in the unit's cgroup)."""
    if not socket:  # no systemd (tests, debugging): nobody to tell
        return
    if not socket.startswith("/"):
        raise SetupError(f"--sdnotify=container: systemd's NOTIFY_SOCKET {socket} is no path to bind "
                         "into the container (an abstract socket)", hint="use --sdnotify=conmon")
    mount_in_root(rootfs, NOTIFY_SOCKET_IN, socket, None, linux.MS_BIND, create="file")


def pivot_into(rootfs: str) -> None:
    # runc's pivot_root(".", ".") trick: no put_old directory needs to exist in the image; the
    # old root ends up stacked on the new one, where it is detached.
    fd = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(fd)
    finally:
        os.close(fd)
    linux.pivot_root(".", ".")
    # Slave first, so that unmounting the old root cannot propagate to a shared peer on the host.
    linux.mount(None, ".", None, linux.MS_SLAVE | linux.MS_REC)
    linux.umount2(".", linux.MNT_DETACH)
    os.chdir("/")


def remount_readonly_recursive(path: str) -> None:
    """`path` and every mount below it read-only: a bind with MS_REC takes the source's
    submounts along, and a remount changes the top one only (Docker's `:ro` left them writable
    until 25.0 made it recursive)."""
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        linux.mount_setattr_recursive(fd, linux.MOUNT_ATTR_RDONLY)
        return
    except OSError as e:
        if e.errno != errno.ENOSYS:  # a kernel before 5.12: one mount at a time
            raise
        top = os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    for mountpoint in mounts_at_or_under(top):
        remount_readonly(mountpoint)


def mounts_at_or_under(top: str) -> list[str]:
    """Mount points at or below `top`, parents first, from /proc/self/mountinfo."""
    found = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point == top or point.startswith(top.rstrip("/") + "/"):
                found.append(point)
    return found


def _unescape(field: bytes) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo octal escapes
    out, i = bytearray(), 0
    while i < len(field):
        if field[i:i + 1] == b"\\" and field[i + 1:i + 4].isdigit():
            out.append(int(field[i + 1:i + 4], 8))
            i += 4
        else:
            out += field[i:i + 1]
            i += 1
    return os.fsdecode(bytes(out))


def thermal_throttle_paths(cpu_dir: str) -> list[str]:
    try:
        names = os.listdir(cpu_dir)
    except OSError:
        return []
    return sorted(f"{cpu_dir}/{n}/thermal_throttle" for n in names
                  if n.startswith("cpu") and n[3:].isdigit())


def mask_paths(paths: Sequence[str]) -> None:
    for path in paths:
        if os.path.isdir(path):
            linux.mount("tmpfs", path, "tmpfs", linux.MS_RDONLY)
        elif os.path.exists(path):
            linux.mount("/dev/null", path, None, linux.MS_BIND)


def make_readonly(paths: Sequence[str]) -> None:
    for path in paths:
        if os.path.exists(path):
            linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC)
            remount_readonly(path)


_KEPT_MOUNT_FLAGS = ((os.ST_NOSUID, linux.MS_NOSUID), (os.ST_NODEV, linux.MS_NODEV),
                     (os.ST_NOEXEC, linux.MS_NOEXEC), (os.ST_NOATIME, linux.MS_NOATIME),
                     (os.ST_NODIRATIME, linux.MS_NODIRATIME), (os.ST_RELATIME, linux.MS_RELATIME))


def remount_readonly(path: str) -> None:
    # A bind remount replaces all per-mount flags; the ones already set are kept (in a user
    # namespace dropping a locked flag would fail with EPERM, and nosuid must stay anyway).
    current = os.statvfs(path).f_flag
    kept = 0
    for st_flag, ms_flag in _KEPT_MOUNT_FLAGS:
        if current & st_flag:
            kept |= ms_flag
    linux.mount(None, path, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | kept)


# --- identity, environment, privileges (inside the new root) ------------------------------------

def _read_db(path: str, fields: int) -> list[list[str]]:
    """Entries of /etc/passwd or /etc/group, read without following the image into a FIFO or a
    device that would block us."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    with open(fd, encoding="utf-8", errors="replace") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        lines = f.read().splitlines()
    entries = [ln.split(":") for ln in lines if ln and not ln.startswith("#")]
    return [e for e in entries if len(e) >= fields and e[2].isdigit()]


def resolve_user(user: str) -> User:
    """docker run --user: "", "name", "uid", with ":group" or ":gid", looked up in the image."""
    name, _, group = user.partition(":")
    name = name or "0"
    passwd = _read_db("/etc/passwd", 7)
    groups = _read_db("/etc/group", 4)
    entry = next((e for e in passwd if e[0] == name), None)
    if entry is None and name.isdigit():
        entry = next((e for e in passwd if e[2] == name), None)
    if entry is None and not name.isdigit():
        raise SetupError(f"unable to find user {name}: no matching entries in passwd file")
    uid = int(entry[2]) if entry else int(name)
    gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    home = (entry[5] if entry else "") or "/"
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            match = next((g for g in groups if g[0] == group), None)
            if match is None:
                raise SetupError(f"unable to find group {group}: no matching entries in group file")
            gid = int(match[2])
    # runc's GetExecUser: an explicit group is the only one; otherwise the user's memberships.
    member_of = set() if group else {int(g[2]) for g in groups if entry and entry[0] in g[3].split(",")}
    return User(uid, gid, tuple(sorted(member_of | {gid})), home)


def container_env(spec: ContainerSpec, user: User) -> tuple[str, ...]:
    base = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={spec.hostname_or_id}"]
    if spec.tty:
        base.append("TERM=xterm")
    env = merge_env(base, spec.env)
    if not any(e.startswith("HOME=") for e in env):
        env += (f"HOME={user.home}",)
    if spec.sdnotify == "container":
        env += (f"NOTIFY_SOCKET={NOTIFY_SOCKET_IN}",)
    return env


def capability_mask(capabilities: Sequence[str], last_cap: int | None = None) -> int:
    """The 64-bit mask of the named capabilities the running kernel knows."""
    last = linux.cap_last_cap() if last_cap is None else last_cap
    return sum(1 << cap_number(c) for c in set(capabilities) if c in ALL_CAPS and cap_number(c) <= last)


def drop_privileges(user: User, capabilities: Sequence[str], within_held: bool = False) -> None:
    """`within_held` (--privileged): as many of them as we hold, where a host (itself a
    container) holds fewer than the kernel knows; otherwise a missing one is an error."""
    last = linux.cap_last_cap()
    mask = capability_mask(capabilities, last)
    if within_held:
        mask &= held_capabilities()
    # The bounding set first: it caps what any later execve can grant, to root or through file
    # capabilities, and dropping from it needs CAP_SETPCAP, which we still hold.
    for number in range(last + 1):
        if not mask & (1 << number):
            linux.prctl(linux.PR_CAPBSET_DROP, number)
    os.setgroups(list(user.groups))
    # setuid away from 0 clears the permitted set unless KEEPCAPS is on; capset() below then
    # sets exactly the container's set either way.
    linux.prctl(linux.PR_SET_KEEPCAPS, 1)
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    # Inheritable stays empty: with it set, a program with inheritable file capabilities would
    # regain them across execve (CVE-2022-24769). For a non-root user execve then empties
    # permitted and effective too, as in Docker; for root they become the bounding set.
    linux.capset(mask, mask, 0)
    linux.prctl(linux.PR_SET_KEEPCAPS, 0)
    linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)


def held_capabilities() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("CapPrm:"))


def resolve_command(name: str, env: Sequence[str]) -> str:
    """The command's path in the new root, found as execvp would (with the container's PATH),
    so that "not found" (127) and "cannot run" (126) get a clear line, as in Docker."""
    if "/" in name:
        if not os.path.exists(name):
            raise SetupError(f'exec: "{name}": no such file or directory', status=EXIT_NOT_FOUND)
        if os.path.isdir(name) or not os.access(name, os.X_OK):
            why = "is a directory" if os.path.isdir(name) else "permission denied"
            raise SetupError(f'exec: "{name}": {why}', status=EXIT_CANNOT_INVOKE)
        return name
    search = next((e[5:] for e in reversed(env) if e.startswith("PATH=")), DEFAULT_PATH)
    for directory in search.split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise SetupError(f'exec: "{name}": executable file not found in $PATH', status=EXIT_NOT_FOUND)
