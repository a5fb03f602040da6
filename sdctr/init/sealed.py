"""A sealed anonymous copy of a host binary, to exec where a container can see the process.

A process in the container's PID namespace shows its binary at /proc/<pid>/exe. Were that the
host's file (the reaper, python3), a container root could open it and write it once no running
process guards it with ETXTBSY, or keep a descriptor for later: what the host runs next is then
the container's (CVE-2019-5736, where runc was rewritten that way). runc's answer, followed
here (libcontainer/dmz/cloned_binary_linux.go, once nsenter/cloned_binary.c): exec a memfd copy
carrying every seal, so its /proc/<pid>/exe is "/memfd:<name> (deleted)", names no host file,
and refuses any write for good (F_SEAL_SEAL: no one can lift the others).

Two users in the init (sdctr.init.standard): the static reaper (tini-static, catatonit), exec'd
as PID 1; and, without one, the init's own interpreter (/proc/self/exe), which the Python
fallback re-executes from before forking PID 1 (become_sealed_init), as `sdctr exec` does its
helper (sdctr.init.enter).

The price: the copy is shmem, not the shared page cache, charged to the container's memory
cgroup. tini-static: ~0.7 MiB per container and ~0.3 ms of sendfile per start. The Python
fallback: the whole interpreter binary, 6.5 MiB of shmem per container for Debian 12's
python3.11 (6,831,736 bytes; PID 1's PSS 6.1 -> 7.6 MiB, its RSS ~13 MiB either way), and a
second interpreter start: ~60 ms more CPU per start (children's user+sys, median of 30 starts of
`true`: 86-90 -> 144-157 ms, on 2 cores at load 15-19, which inflates both; the copy itself
19 ms of it there), the extra interpreter and the init's imports (seccomp's and linux's ctypes)
being most of it. Measured with tests/host/test_init.py's Containers, SDCTR_INIT_REAPER=python.

The fallback's PID 1 still maps the host's shared libraries (libc.so.6, libm, libz, libexpat,
lib-dynload's modules). A container holding CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE) and
CAP_SYS_PTRACE opens them read-write through /proc/1/map_files (tried on Linux 6.18: an O_RDWR
open of libc.so.6 succeeds), so the fallback refuses such a container (init/standard.py's
refuse_unsealable); --privileged is unconfined by choice. tini-static maps no library.
"""

from __future__ import annotations

import errno
import fcntl
import os

SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
# <linux/memfd.h>, Linux 6.3: an executable memfd, asked for explicitly. Under the sysctl
# vm.memfd_noexec=1 a memfd made without it is sealed non-executable, and exec fails (EACCES).
MFD_EXEC = 0x0010


def sealed_copy(path: str, name: str) -> int:
    """A close-on-exec descriptor of a sealed memfd holding `path`'s bytes; exec it with
    os.execve(fd, ...) (execveat, AT_EMPTY_PATH). Close-on-exec is safe for an ELF binary,
    not for a script: the kernel hands a script's interpreter /dev/fd/N, gone by then."""
    src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = _memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            remaining = os.fstat(src).st_size
            while remaining > 0:  # sendfile: no copy through our memory
                sent = os.sendfile(fd, src, None, remaining)
                if sent == 0:
                    raise OSError(errno.EIO, f"copying {path}: it shrank while read")
                remaining -= sent
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
        except BaseException:
            os.close(fd)
            raise
    finally:
        os.close(src)
    return fd


def _memfd_create(name: str, flags: int) -> int:
    try:
        return os.memfd_create(name, flags | MFD_EXEC)
    except OSError as e:
        if e.errno != errno.EINVAL:  # EINVAL: a kernel before 6.3, where every memfd may be run
            raise
    return os.memfd_create(name, flags)
