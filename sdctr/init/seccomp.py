"""The container's seccomp filter: an allow list with the semantics of Docker's default profile.

As moby's profiles/seccomp/default.json: every syscall the profile does not allow answers EPERM,
except syscalls newer than any the profile names, which answer ENOSYS (runc prepends a stub for
that, libcontainer/seccomp/patchbpf), so that a C library falls back to the older call it knows
instead of failing. A capability the container holds allows what Docker allows with it.
io_uring is refused (moby 25 dropped it: its rings bypass seccomp and have been a steady source
of kernel bugs), AF_VSOCK sockets too (they reach the hypervisor), `personality` takes only the
values Docker allows, and clone(2) only without namespace flags.

libseccomp (which systemd links, so it is on every host we run on) compiles the rules to BPF;
we export that program and prepend our own stub, then load it ourselves. A name the installed
libseccomp cannot resolve is never skipped: a syscall from the kernel's common table (numbers
424 and up are the same on every architecture we run on) is judged by its number in the stub,
and any other stays refused.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
from collections.abc import Iterable

from sdctr import linux

# Docker's list, less io_uring_enter/register/setup, plus the calls moby allowed since
# (cachestat, fchmodat2, futex_wake/wait/requeue, map_shadow_stack).
ALLOWED = (
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget",
    "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64",
    "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat", "dup",
    "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat",
    "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
    "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32",
    "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork",
    "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync",
    "ftruncate", "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait",
    "futex_waitv", "futex_wake", "futimesat", "getcpu", "getcwd", "getdents", "getdents64",
    "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
    "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid",
    "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32",
    "getrlimit", "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt",
    "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl",
    "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get",
    "ioprio_set", "io_setup", "io_submit", "ipc", "kill", "landlock_add_rule",
    "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link",
    "linkat", "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr",
    "lstat", "lstat64", "madvise", "map_shadow_stack", "membarrier", "memfd_create",
    "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2",
    "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr", "mq_notify", "mq_open",
    "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64",
    "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock",
    "munlockall", "munmap", "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open",
    "openat", "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc",
    "pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv",
    "preadv2", "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64",
    "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv",
    "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr",
    "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction",
    "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity",
    "sched_getattr", "sched_getparam", "sched_get_priority_max", "sched_get_priority_min",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send",
    "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32",
    "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer",
    "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
    "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid",
    "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr", "shmat",
    "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4",
    "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs",
    "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo",
    "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
    "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
    "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate",
    "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat",
    "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write",
    "writev",
)

# From 4.8 on, ptrace can no longer be used to get around seccomp, so Docker allows it (strace
# and gdb work in containers by default).
ALLOWED_FROM_4_8 = ("process_vm_readv", "process_vm_writev", "ptrace")

# The architecture's own calls, by `uname -m`.
ALLOWED_ON_MACHINE = {
    "x86_64": ("arch_prctl", "modify_ldt"),
    "aarch64": ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
                "cacheflush", "set_tls"),
    "ppc64le": ("sync_file_range2", "swapcontext"),
    "s390x": ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"),
    "riscv64": ("riscv_flush_icache",),
}

# Docker's "includes": {"caps": [...]}: allowed when the container holds the capability.
ALLOWED_WITH_CAP: dict[str, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": (
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
        "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
        "umount2", "unshare",
    ),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("delete_module", "init_module", "finit_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                       "process_vm_writev", "ptrace"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
}

# personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
# and 0xffffffff (query). Anything else (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC) is refused.
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# include/linux/socket.h
AF_VSOCK = 40

# Refused by name, so that their numbers count as known (EPERM, not ENOSYS) even where the
# installed libseccomp or this list would otherwise leave them unnamed.
REFUSED = ("io_uring_enter", "io_uring_register", "io_uring_setup")

# Syscalls from 424 on have one number on every architecture but alpha (the kernel's common
# table, scripts/syscall.tbl); x32 adds its bit. What the installed libseccomp cannot resolve
# of these, the stub judges by number.
COMMON_NUMBERS = {
    "pidfd_send_signal": 424, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "pidfd_open": 434, "clone3": 435, "close_range": 436,
    "openat2": 437, "pidfd_getfd": 438, "faccessat2": 439, "process_madvise": 440,
    "epoll_pwait2": 441, "mount_setattr": 442, "quotactl_fd": 443, "landlock_create_ruleset": 444,
    "landlock_add_rule": 445, "landlock_restrict_self": 446, "memfd_secret": 447,
    "process_mrelease": 448, "futex_waitv": 449, "set_mempolicy_home_node": 450, "cachestat": 451,
    "fchmodat2": 452, "map_shadow_stack": 453, "futex_wake": 454, "futex_wait": 455,
    "futex_requeue": 456,
}

# Secondary ABIs the native one can run, as Docker lists them: without them the filter would
# kill every 32-bit program instead of filtering it (libseccomp's bad-arch action).
_COMPANION_ARCHES = {"x86_64": ("x86", "x32"), "aarch64": ("arm",), "s390x": ("s390",),
                     "ppc64le": (), "riscv64": ()}

# include/seccomp.h
_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_CMP_NE = 1
_SCMP_CMP_EQ = 4
_SCMP_CMP_MASKED_EQ = 7
_SCMP_FLTATR_CTL_OPTIMIZE = 8
_NR_SCMP_ERROR = -1
_SCMP_ARCH_X86_64 = 0xC000003E
_SCMP_ARCH_X32 = 0x4000003E
_X32_SYSCALL_BIT = 0x40000000


def _act_errno(err: int) -> int:
    return 0x00050000 | (err & 0xFFFF)


def _kernel_at_least(major: int, minor: int) -> bool:
    release = os.uname().release.split("-")[0].split(".")
    try:
        return (int(release[0]), int(release[1])) >= (major, minor)
    except (IndexError, ValueError):
        return False


def allowed_syscalls(capabilities: Iterable[str], machine: str | None = None) -> list[str]:
    """The names allowed outright (clone, socket and personality aside: they are allowed for
    some arguments only) to a container holding `capabilities`."""
    held = set(capabilities)
    names = set(ALLOWED) | set(ALLOWED_ON_MACHINE.get(machine or linux.machine(), ()))
    if _kernel_at_least(4, 8):
        names.update(ALLOWED_FROM_4_8)
    for cap in held & ALLOWED_WITH_CAP.keys():
        names.update(ALLOWED_WITH_CAP[cap])
    return sorted(names)


def known_syscalls() -> set[str]:
    """Every name the profile judges: past the highest of their numbers, a syscall is newer
    than the profile and answers ENOSYS."""
    names = set(ALLOWED) | set(ALLOWED_FROM_4_8) | set(REFUSED)
    names.update({"socket", "personality"})
    for group in (*ALLOWED_ON_MACHINE.values(), *ALLOWED_WITH_CAP.values()):
        names.update(group)
    return names


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as e:
        raise OSError(errno.ENOENT, "libseccomp.so.2 is not installed (Debian: libseccomp2)") from e
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def _check(r: int, what: str) -> None:
    if r < 0:
        raise OSError(-r, f"{what}: {os.strerror(-r)}")


class Filter:
    """A filter compiled now and loaded later: libseccomp must be dlopen()ed while the host's
    root is still ours, and the filter is best installed just before exec, after the last
    syscall it would refuse us (pivot_root, mount, sethostname). `unresolved` names the
    syscalls that neither libseccomp nor COMMON_NUMBERS could place (they stay refused)."""

    # libseccomp's optimizer: 2 sorts the syscall numbers into a binary tree (libseccomp >= 2.5;
    # older ones refuse the attribute and keep the linear list runc's filters use, only slower).
    OPTIMIZE = 2

    def __init__(self, capabilities: Iterable[str]):
        caps = set(capabilities)
        self._lib = _lib()
        ctx = self._lib.seccomp_init(_act_errno(errno.EPERM))
        if not ctx:
            raise OSError(errno.ENOMEM, "seccomp_init failed")
        self.unresolved: list[str] = []
        try:
            arches = self._add_arches(ctx)
            by_number = self._add_rules(ctx, caps)
            sockets = {arch: self._lib.seccomp_syscall_resolve_name_arch(arch, b"socket")
                       for arch in arches[:1] + [a for a in arches if a == _SCMP_ARCH_X32]}
            stub = _stub(arches, self._highest_known(arches), by_number, sockets)
            self.program = stub + _export(self._lib, ctx)
        finally:
            self._lib.seccomp_release(ctx)

    def _add_arches(self, ctx: int) -> list[int]:
        lib = self._lib
        arches = [lib.seccomp_arch_native()]
        for name in _COMPANION_ARCHES.get(linux.machine(), ()):
            token = lib.seccomp_arch_resolve_name(name.encode())
            if token:
                r = lib.seccomp_arch_add(ctx, token)
                if r != -errno.EEXIST:
                    _check(r, f"seccomp_arch_add({name})")
                arches.append(token)
        lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_OPTIMIZE, self.OPTIMIZE)
        return arches

    def _add_rules(self, ctx: int, caps: set[str]) -> dict[int, int]:
        """Adds the rules libseccomp can place; returns {number: action} for the rest."""
        lib = self._lib
        by_number: dict[int, int] = {}

        def add(name: str, action: int, *cmps: _ArgCmp) -> None:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == _NR_SCMP_ERROR:
                if name in COMMON_NUMBERS and not cmps:
                    by_number[COMMON_NUMBERS[name]] = action
                else:
                    self.unresolved.append(name)
                return
            array = (_ArgCmp * len(cmps))(*cmps) if cmps else None
            _check(lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), array),
                   f"seccomp_rule_add({name})")

        allow = _SCMP_ACT_ALLOW
        for name in allowed_syscalls(caps):
            add(name, allow)
        add("socket", allow, _ArgCmp(0, _SCMP_CMP_NE, AF_VSOCK, 0))
        for persona in PERSONALITIES:
            add("personality", allow, _ArgCmp(0, _SCMP_CMP_EQ, persona, 0))
        if "CAP_SYS_ADMIN" not in caps:
            # clone(2) without any CLONE_NEW* flag (Docker: flags & 0x7E020000 == 0). The
            # flags are the first argument everywhere but s390, where the stack comes first.
            index = 1 if linux.machine().startswith("s390") else 0
            add("clone", allow, _ArgCmp(index, _SCMP_CMP_MASKED_EQ, linux.CLONE_NEW_ALL, 0))
            # clone3 passes its flags in a struct that seccomp cannot read: ENOSYS makes the C
            # library fall back to clone(2), which the rule above judges (as Docker does).
            add("clone3", _act_errno(errno.ENOSYS))
        return by_number

    def _highest_known(self, arches: list[int]) -> dict[int, int]:
        """Per architecture (x32 on its own), the highest number of a syscall the profile names."""
        lib = self._lib
        highest: dict[int, int] = {}
        for arch in arches:
            numbers = []
            for name in known_syscalls():
                nr = lib.seccomp_syscall_resolve_name_arch(arch, name.encode())
                if nr < 0 and name in COMMON_NUMBERS:
                    nr = COMMON_NUMBERS[name] | (_X32_SYSCALL_BIT if arch == _SCMP_ARCH_X32 else 0)
                if nr >= 0:
                    numbers.append(nr)
            highest[arch] = max(numbers)
        return highest

    def load(self) -> None:
        """Installs the filter on this thread; needs no_new_privs set or CAP_SYS_ADMIN held."""
        linux.seccomp_set_filter(self.program)


def _export(lib: ctypes.CDLL, ctx: int) -> bytes:
    fd = os.memfd_create("sdctr-seccomp", os.MFD_CLOEXEC)
    try:
        _check(lib.seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


# --- the stub in front of libseccomp's program (classic BPF, include/uapi/linux/filter.h) -------

_LD_W_ABS = 0x20
_JMP_JA, _JMP_JEQ, _JMP_JGT, _JMP_JSET = 0x05, 0x15, 0x25, 0x45
_RET_K = 0x06
_SECCOMP_RET_ALLOW = 0x7FFF0000
_OFF_NR, _OFF_ARCH = 0, 4
# struct seccomp_data: args[0] is a u64 at 16; its low 32 bits come first on little endian.
_OFF_ARG0_LOW = 16 if sys.byteorder == "little" else 20


class _Asm:
    """Instructions with symbolic forward jumps, resolved to BPF's relative offsets."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int, int | str, int | str]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def op(self, code: int, k: int = 0, jt: int | str = 0, jf: int | str = 0) -> None:
        self.code.append((code, k, jt, jf))

    def jump(self, target: str) -> None:
        self.code.append((_JMP_JA, 0, target, 0))

    def assemble(self) -> bytes:
        out = []
        for i, (code, k, jt, jf) in enumerate(self.code):
            t, f = (x if isinstance(x, int) else self.labels[x] - i - 1 for x in (jt, jf))
            if code == _JMP_JA:  # the offset is k, 32 bits wide
                k, t, f = t, 0, 0  # noqa: PLW2901
            if not (0 <= t <= 255 and 0 <= f <= 255):
                raise ValueError("seccomp stub: jump out of range")
            out.append(struct.pack("=HBBI", code, t, f, k & 0xFFFFFFFF))
        return b"".join(out)


def _stub(arches: list[int], highest: dict[int, int], by_number: dict[int, int],
          sockets: dict[int, int]) -> bytes:
    """Per architecture: a number above the highest known answers ENOSYS; a number the
    installed libseccomp could not place gets its action here; socket(AF_VSOCK) is refused on
    the low 32 bits of the family (the kernel reads an int: 0x1_00000028 is AF_VSOCK too,
    which the 64-bit comparison of Docker's rule lets through). The rest falls through to
    libseccomp's program. `sockets`: socket's number on each 64-bit ABI (the native one, x32)."""
    asm = _Asm()
    asm.op(_LD_W_ABS, _OFF_ARCH)
    audit_arches = [a for a in arches if a != _SCMP_ARCH_X32]
    for i, arch in enumerate(audit_arches):
        asm.label(f"arch{i}")
        asm.op(_JMP_JEQ, arch, 0, f"arch{i + 1}")
        asm.op(_LD_W_ABS, _OFF_NR)
        abis = [(arch, f"abi{i}")]
        if arch == _SCMP_ARCH_X86_64 and _SCMP_ARCH_X32 in arches:
            # x32 shares x86_64's audit arch; its numbers carry the x32 bit.
            asm.op(_JMP_JSET, _X32_SYSCALL_BIT, f"abi{i}x32", 0)
            abis.append((_SCMP_ARCH_X32, f"abi{i}x32"))
        for abi, name in abis:
            asm.label(name)
            bit = _X32_SYSCALL_BIT if abi == _SCMP_ARCH_X32 else 0
            asm.op(_JMP_JGT, highest[abi], "enosys", 0)
            for nr, action in sorted(by_number.items()):
                asm.op(_JMP_JEQ, nr | bit, 0, 1)
                asm.op(_RET_K, action)
            socket = sockets.get(abi, -1)
            if socket >= 0:  # a 64-bit ABI: the high word exists
                asm.op(_JMP_JEQ, socket, 0, "end")
                asm.op(_LD_W_ABS, _OFF_ARG0_LOW)
                asm.op(_JMP_JEQ, AF_VSOCK, "eperm", "end")
            else:
                asm.jump("end")
    asm.label(f"arch{len(audit_arches)}")
    asm.jump("end")
    asm.label("enosys")
    asm.op(_RET_K, _act_errno(errno.ENOSYS))
    asm.label("eperm")
    asm.op(_RET_K, _act_errno(errno.EPERM))
    asm.label("end")
    return asm.assemble()

