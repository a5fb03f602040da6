"""Raw Linux system calls that Python's os module lacks (at the 3.9 floor), through ctypes.

One small module (mkosi sandbox.py's habit): constants from the kernel's uapi headers, libc with
use_errno=True, and every failure raised as OSError carrying the call's name, so a failed step
reads "mount(proc, /run/sdctr/.../proc): Operation not permitted" rather than a bare errno.
"""

from __future__ import annotations

# the socket module's C core: the module's own import is ~3 ms (selectors, and enums made of
# every constant) of every container start, for two datagram sockets
import _socket
import ctypes
import errno
import fcntl
import os
import struct

AF_INET, AF_UNIX = _socket.AF_INET, _socket.AF_UNIX
SOL_SOCKET, SCM_RIGHTS = _socket.SOL_SOCKET, _socket.SCM_RIGHTS

# include/uapi/linux/sched.h
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEW_ALL = (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
                 | CLONE_NEWPID | CLONE_NEWNET)

# include/uapi/linux/mount.h
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_SLAVE = 1 << 19
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2
MOUNT_ATTR_RDONLY = 0x1
_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000

# include/uapi/linux/prctl.h
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# include/uapi/linux/capability.h
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# include/uapi/linux/sockios.h, if.h
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

# include/uapi/linux/seccomp.h
_SECCOMP_MODE_FILTER = 2

# glibc has no pivot_root() wrapper; the number is per architecture (arch/*/syscall*.tbl)
_NR_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217,
                  "armv7l": 218, "i686": 217}
# clone(2) with flags first (s390x, which puts the stack first, falls back to a plain fork)
_NR_CLONE = {"x86_64": 56, "aarch64": 220, "riscv64": 220, "ppc64le": 120, "armv7l": 120, "i686": 120}
CLONE_PARENT = 0x00008000
_SIGCHLD = 17
# From 424 on, one number on every architecture but alpha (scripts/syscall.tbl).
_NR_MOUNT_SETATTR = 442

# The C library this interpreter already runs on: find_library would spawn ldconfig (~10 ms
# on every container start).
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, name: str, *args: object) -> int:
    if result < 0:
        err = ctypes.get_errno()
        detail = ", ".join(str(a) for a in args if a is not None)
        raise OSError(err, f"{name}({detail}): {os.strerror(err)}")
    return result


def _b(path: str | os.PathLike[str] | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare", hex(flags))


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns", fd)


def mount(source: str | os.PathLike[str] | None, target: str | os.PathLike[str], fstype: str | None,
          flags: int = 0, data: str | None = None) -> None:
    r = _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(r, "mount", source, target, fstype)


def umount2(target: str | os.PathLike[str], flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), "umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    nr = _NR_PIVOT_ROOT.get(machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown syscall number on {machine()}")
    _check(_libc.syscall(ctypes.c_long(nr), _b(new_root), _b(put_old)), "pivot_root", new_root, put_old)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr_recursive(fd: int, attr_set: int) -> None:
    """mount_setattr(2) on the mount `fd` (an O_PATH descriptor) and every mount below it, at
    once. Linux >= 5.12; older kernels raise ENOSYS."""
    attr = _MountAttr(attr_set, 0, 0, 0)
    r = _libc.syscall(ctypes.c_long(_NR_MOUNT_SETATTR), ctypes.c_int(fd), b"",
                      ctypes.c_uint(_AT_EMPTY_PATH | _AT_RECURSIVE), ctypes.byref(attr),
                      ctypes.c_size_t(ctypes.sizeof(attr)))
    _check(r, "mount_setattr", fd, hex(attr_set))


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_set_filter(program: bytes) -> None:
    """Installs a classic BPF program (struct sock_filter[], 8 bytes each) as this thread's
    seccomp filter; needs no_new_privs or CAP_SYS_ADMIN."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    r = _libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(_SECCOMP_MODE_FILTER),
                    ctypes.byref(prog), ctypes.c_ulong(0), ctypes.c_ulong(0))
    _check(r, "prctl", "PR_SET_SECCOMP", f"{len(program) // 8} instructions")


def fork_sibling() -> int:
    """fork(), but the child is our parent's child (CLONE_PARENT), with the interpreter's own
    before- and after-fork steps as os.fork() takes them. Only for a single-threaded process:
    glibc's fork handlers do not run. Where the syscall's number is unknown, a plain fork."""
    nr = _NR_CLONE.get(machine())
    if nr is None:
        return os.fork()
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = _libc.syscall(ctypes.c_long(nr), ctypes.c_ulong(CLONE_PARENT | _SIGCHLD), None, None, None, None)
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    api.PyOS_AfterFork_Parent()
    return _check(pid, "clone", "CLONE_PARENT")


def machine() -> str:
    """platform.machine(), without importing platform (~2 ms of every container start)."""
    return os.uname().machine


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname", name)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    r = _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                    ctypes.c_ulong(arg4), ctypes.c_ulong(arg5))
    return _check(r, "prctl", option, arg2)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Sets this thread's capability sets from 64-bit masks (version 3: two 32-bit words)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(header), data), "capset", hex(effective))


def cap_last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def set_link_up(name: str) -> None:
    """What `ip link set NAME up` does, for the loopback of a fresh network namespace."""
    s = datagram_socket(AF_INET)
    try:
        ifr = struct.pack("16sH14x", name.encode(), 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, _SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", name.encode(), flags | _IFF_UP))
    finally:
        s.close()


def datagram_socket(family: int) -> _socket.socket:
    return _socket.socket(family, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)


# --- process handles and descriptors (pidfd: Linux 5.3, setns with a pidfd: 5.8, close_range: 5.9)

# include/uapi/linux/close_range.h
CLOSE_RANGE_CLOEXEC = 1 << 2
# the generic syscall table (since 5.x every architecture shares these numbers)
_NR_CLOSE_RANGE = 436


def pidfd_open(pid: int) -> int:
    """A descriptor of the process `pid` is now: it stays that process's however the PID is
    reused. ENOSYS before Linux 5.3."""
    try:
        return os.pidfd_open(pid)  # type: ignore[attr-defined,unused-ignore]
    except OSError as e:
        raise OSError(e.errno, f"pidfd_open({pid}): {e.strerror}") from None


def pidfd_alive(pidfd: int) -> bool:
    """Whether the process has not yet exited (a pidfd polls readable once it has): while it has
    not, its PID is its own, so a /proc/<pid> path opened before this check was its."""
    import select

    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return not poller.poll(0)


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    """Closes (or, with CLOSE_RANGE_CLOEXEC, marks close-on-exec) every descriptor from first to
    last; where the kernel lacks the call (before 5.9), each one in turn."""
    r = _libc.syscall(ctypes.c_long(_NR_CLOSE_RANGE), ctypes.c_uint(first), ctypes.c_uint(last),
                      ctypes.c_uint(flags))
    if r == 0:
        return
    err = ctypes.get_errno()
    if err not in (errno.ENOSYS, errno.EINVAL):
        raise OSError(err, f"close_range({first}, {last}): {os.strerror(err)}")
    for fd in _open_descriptors():
        if first <= fd <= last:
            try:  # the listing's own descriptor is among them, closed already
                if flags & CLOSE_RANGE_CLOEXEC:
                    os.set_inheritable(fd, False)
                else:
                    os.close(fd)
            except OSError as e:
                if e.errno != errno.EBADF:
                    raise


def _open_descriptors() -> list[int]:
    return sorted(int(fd) for fd in os.listdir("/proc/self/fd") if fd.isdigit())


# include/uapi/asm-generic/ioctls.h (x86, arm, riscv, s390; powerpc and mips differ and are not
# targets)
_TIOCGPTN = 0x80045430
_TIOCSPTLCK = 0x40045431
_TIOCGPTPEER = 0x5441


def open_pty(ptmx: str) -> tuple[int, int]:
    """A new pty of the devpts that `ptmx` belongs to: (master, slave), both close-on-exec and
    neither our controlling terminal. The slave comes from the master itself (TIOCGPTPEER,
    Linux 4.13), not from a path someone could have replaced; by its path before that."""
    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
        try:
            slave = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOTTY):
                raise
            number = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, b"\0" * 4))[0]
            slave = os.open(f"{os.path.dirname(ptmx)}/{number}", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        os.close(master)
        raise OSError(e.errno, f"a pty of {ptmx}: {e.strerror}") from None
    return master, slave


# include/uapi/linux/openat2.h; the call is 437 on every architecture (scripts/syscall.tbl)
_NR_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2) (Linux 5.6): with RESOLVE_IN_ROOT, `path` (its symlinks and '..' included) is
    resolved as if `dirfd` were the root, so nothing outside it can be reached. OSError(ENOSYS)
    before 5.6: the caller walks the path itself."""
    how = struct.pack("QQQ", flags | os.O_CLOEXEC, mode, resolve)
    r = _libc.syscall(ctypes.c_long(_NR_OPENAT2), ctypes.c_int(dirfd), _b(path), how,
                      ctypes.c_size_t(len(how)))
    return _check(r, "openat2", path)
