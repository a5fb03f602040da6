"""A seccomp filter with the semantics of Docker's default profile, built with libseccomp via ctypes.

Docker's profile (moby profiles/seccomp/default.json) is an allow list whose default answer is
EPERM; written the other way round, it is "allow, except these return EPERM". The deny list is
short and stable, so we state it directly, and a capability the container was given lifts the
entries Docker lifts for it. libseccomp ships wherever systemd does (systemd links it).
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterable

from sdctr import linux

# Always refused: obsolete, or reaching the whole host (keyrings are not namespaced, kexec,
# swap, NUMA policy of host memory, userfaultfd as a kernel-race amplifier).
_ALWAYS_DENIED = (
    "add_key", "create_module", "get_kernel_syms", "kexec_file_load", "kexec_load", "keyctl",
    "nfsservctl", "query_module", "request_key", "swapoff", "swapon", "_sysctl", "sysfs", "uselib",
    "userfaultfd", "ustat", "vm86", "vm86old", "pivot_root",
)

# Refused unless the container holds one of the capabilities (Docker's "includes": {"caps"}).
_DENIED_UNLESS: dict[str, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": (
        "bpf", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie", "mount",
        "mount_setattr", "move_mount", "name_to_handle_at", "open_tree", "perf_event_open",
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
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64", "clock_adjtime",
                     "clock_adjtime64"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node",
                     "move_pages"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
}

# Secondary ABIs the native one can run, as Docker lists them: without them the filter would
# kill every 32-bit program instead of filtering it (libseccomp's bad-arch action).
_COMPANION_ARCHES = {"x86_64": ("x86", "x32"), "aarch64": ("arm",), "s390x": ("s390",),
                     "ppc64le": ()}

# include/seccomp.h
_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_CMP_MASKED_EQ = 7


def _act_errno(err: int) -> int:
    return 0x00050000 | (err & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


# Docker allows these without CAP_SYS_PTRACE from kernel 4.8 on, where ptrace can no longer
# be used to bypass seccomp (so strace and gdb work in containers by default).
_SAFE_FROM_4_8 = ("ptrace", "process_vm_readv", "process_vm_writev")


def _kernel_at_least(major: int, minor: int) -> bool:
    release = os.uname().release.split("-")[0].split(".")
    try:
        return (int(release[0]), int(release[1])) >= (major, minor)
    except (IndexError, ValueError):
        return False


def denied_syscalls(capabilities: Iterable[str]) -> list[str]:
    """The syscalls that return EPERM for a container holding `capabilities`."""
    held = set(capabilities)
    lifted = {name for cap in held & _DENIED_UNLESS.keys() for name in _DENIED_UNLESS[cap]}
    if _kernel_at_least(4, 8):
        lifted.update(_SAFE_FROM_4_8)
    denied = set(_ALWAYS_DENIED)
    for names in _DENIED_UNLESS.values():
        denied.update(n for n in names if n not in lifted)
    return sorted(denied)


def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as e:
        raise OSError(errno.ENOENT, "libseccomp.so.2 is not installed (Debian: libseccomp2)") from e
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    return lib


def _check(r: int, what: str) -> None:
    if r < 0:
        raise OSError(-r, f"{what}: {os.strerror(-r)}")


class Filter:
    """A filter built now and loaded later: libseccomp must be dlopen()ed while the host's root
    is still ours, and the filter is best installed just before exec, after the last syscall
    it would refuse us (pivot_root, mount, sethostname)."""

    def __init__(self, capabilities: Iterable[str]):
        caps = set(capabilities)
        self._lib = _lib()
        self._ctx = self._lib.seccomp_init(_SCMP_ACT_ALLOW)
        if not self._ctx:
            raise OSError(errno.ENOMEM, "seccomp_init failed")
        try:
            self._build(caps)
        except BaseException:
            self.release()
            raise

    def _build(self, caps: set[str]) -> None:
        lib, ctx = self._lib, self._ctx
        for arch in _COMPANION_ARCHES.get(linux.machine(), ()):
            token = lib.seccomp_arch_resolve_name(arch.encode())
            if token:
                r = lib.seccomp_arch_add(ctx, token)
                if r != -errno.EEXIST:
                    _check(r, f"seccomp_arch_add({arch})")
        eperm = _act_errno(errno.EPERM)
        for name in denied_syscalls(caps):
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == -1:  # __NR_SCMP_ERROR: no such syscall on any of our arches
                continue
            _check(lib.seccomp_rule_add_array(ctx, eperm, nr, 0, None), f"seccomp_rule_add({name})")
        if "CAP_SYS_ADMIN" not in caps:
            _deny_namespace_clones(lib, ctx, eperm)

    def load(self) -> None:
        """Installs the filter on this thread; needs no_new_privs set or CAP_SYS_ADMIN held."""
        _check(self._lib.seccomp_load(self._ctx), "seccomp_load")

    def release(self) -> None:
        if self._ctx:
            self._lib.seccomp_release(self._ctx)
            self._ctx = None


def _deny_namespace_clones(lib: ctypes.CDLL, ctx: int, eperm: int) -> None:
    # clone(2) with any CLONE_NEW* flag is refused (Docker: flags & 0x7E020000 must be 0). BPF
    # cannot express "masked != 0" in one libseccomp rule, so one rule per flag bit. The flags
    # are the first argument everywhere but s390, where the stack pointer comes first.
    index = 1 if linux.machine().startswith("s390") else 0
    clone = lib.seccomp_syscall_resolve_name(b"clone")
    for bit in range(32):
        flag = 1 << bit
        if linux.CLONE_NEW_ALL & flag:
            cmp = _ArgCmp(index, _SCMP_CMP_MASKED_EQ, flag, flag)
            _check(lib.seccomp_rule_add_array(ctx, eperm, clone, 1, ctypes.byref(cmp)),
                   "seccomp_rule_add(clone)")
    # clone3 passes its flags in a struct that seccomp cannot read: ENOSYS makes glibc fall back
    # to clone(2), which the rules above can judge (Docker does the same).
    clone3 = lib.seccomp_syscall_resolve_name(b"clone3")
    if clone3 != -1:
        _check(lib.seccomp_rule_add_array(ctx, _act_errno(errno.ENOSYS), clone3, 0, None),
               "seccomp_rule_add(clone3)")
