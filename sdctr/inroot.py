"""A path resolved inside a root as if that root were "/", never out of it: the one walk that
`cp` (the CLI, on a container's files) and the init (mount targets in the new root) share.

Each component is opened with O_NOFOLLOW relative to its parent's descriptor and symlinks are
resolved by hand, so neither "..", nor an absolute or relative link, nor a link swapped in while we
walk can lead outside the root; what the caller then opens or mounts onto is exactly what was
checked (runc's securejoin + mount-by-fd, CVE-2021-30465). openat2's RESOLVE_IN_ROOT (Linux 5.6)
does the same in the kernel, where it is allowed; this walk is for where it is not, and for
making what is missing, which openat2 cannot.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

MAX_LINKS = 40  # the kernel's own limit (ELOOP after 40 symlinks)
_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def walk(root: int, path: str, *, create: str | None = None,
         no_symlinks: bool = False) -> tuple[int, list[str]]:
    """An O_PATH descriptor on `path` below the directory descriptor `root`, and the components
    below root it resolved to (the caller closes the descriptor). A final symlink is followed too.
    create="dir" or "file" makes what is missing, the last component as that kind; otherwise a
    missing component is FileNotFoundError. no_symlinks refuses any symlink on the way (for /proc
    and /sys: CVE-2019-19921, proc mounted through a link)."""
    stack = [os.dup(root)]
    names: list[str] = []
    todo = [p for p in reversed(path.split("/")) if p]
    links = 0
    try:
        while todo:
            name = todo.pop()
            if name == ".":
                continue
            if name == "..":
                if names:
                    os.close(stack.pop())
                    names.pop()
                continue
            fd = _open_component(stack[-1], name, create, last=not todo)
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink("", dir_fd=fd)
                os.close(fd)
                links += 1
                if no_symlinks or links > MAX_LINKS:
                    raise OSError(errno.ELOOP, f"{path}: "
                                  f"{'is a symlink' if no_symlinks else os.strerror(errno.ELOOP)}")
                if target.startswith("/"):
                    while names:
                        os.close(stack.pop())
                        names.pop()
                todo.extend(p for p in reversed(target.split("/")) if p)
                continue
            if todo and not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise OSError(errno.ENOTDIR, f"{path}: {name} is not a directory")
            stack.append(fd)
            names.append(name)
        return stack.pop(), names
    finally:
        for fd in stack:
            os.close(fd)


def _open_component(dirfd: int, name: str, create: str | None, last: bool) -> int:
    try:
        return os.open(name, _PATH, dir_fd=dirfd)
    except FileNotFoundError:
        if create is None:
            raise
    with contextlib.suppress(FileExistsError):
        if last and create == "file":  # O_EXCL: never through a symlink planted meanwhile
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644,
                             dir_fd=dirfd))
        else:
            os.mkdir(name, 0o755, dir_fd=dirfd)
    return os.open(name, _PATH, dir_fd=dirfd)


def reopen(fd: int, flags: int) -> int:
    """`fd` (O_PATH, from walk) opened again with `flags`, through its /proc/self/fd link: the
    same inode, whatever has been renamed or swapped on the way since."""
    return os.open(f"/proc/self/fd/{fd}", (flags & ~os.O_NOFOLLOW) | os.O_CLOEXEC)
