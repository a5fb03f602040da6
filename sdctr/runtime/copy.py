"""`cp`: files between a container and the host, both ways, and tar streams with "-".

A container's files are the container's to choose: any name on the way may be a symlink to
/etc/shadow of the host. So every path inside the container is resolved as if its root were "/"
(openat2 with RESOLVE_IN_ROOT, Linux 5.6; where that is refused, sdctr.inroot's walk, which
opens component by component with O_NOFOLLOW and resolves each symlink by hand the same way),
and every entry below is read or made relative to its parent's descriptor, never following a
symlink: a symlink is copied as a symlink. The container's root is its init's /proc/PID/root
while it runs (its volumes and tmpfs included, as Docker shows them), else its snapshot, mounted
for the while.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
from collections.abc import Iterator
from typing import IO

from sdctr.log import SdctrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdctr.paths import Paths
    from sdctr.spec import ContainerSpec
    from sdctr.systemd.manager import Systemd

_PATH = os.O_PATH | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 1 << 20


# --- resolving a path inside the container's root -------------------------------------------------

def open_in_root(root: int, path: str, flags: int = _PATH, *, follow: bool = True) -> int:
    """An fd on `path` resolved below `root` as if `root` were "/": symlinks and ".." included,
    never out of it. With follow=False a final symlink is opened itself (O_PATH)."""
    from sdctr import inroot, linux

    if not follow:
        parent, name = split_path(path)
        pfd = open_in_root(root, parent, _PATH | os.O_DIRECTORY)
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        finally:
            os.close(pfd)
    try:
        return linux.openat2(root, path.lstrip("/") or ".", flags,
                             linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS)
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EPERM):  # EPERM: a seccomp filter that denies it
            raise
    fd, _ = inroot.walk(root, path)
    try:
        return inroot.reopen(fd, flags)
    finally:
        os.close(fd)


def resolve_in_root(root: int, path: str) -> list[str]:
    """The components `path` resolves to below `root`, its final symlink followed too (cp -L);
    FileNotFoundError where it does not exist."""
    from sdctr import inroot

    fd, parts = inroot.walk(root, path)
    os.close(fd)
    return parts


def split_path(path: str) -> tuple[str, str]:
    """(parent, name) of a cp path; name "." where it names a directory's contents (ends in "/."
    or is "/"): ("a/b", "c") of "a/b/c" and of "a/b/c/", ("a/b/c/", ".") of "a/b/c/."."""
    if path in (".", "/.") or path.endswith("/.") or not path.strip("/"):
        return (path[:-1] if path.endswith(".") else path) or "/", "."
    stripped = path.rstrip("/")
    parent, _, name = stripped.rpartition("/")
    return parent or ("/" if stripped.startswith("/") else "."), name


# --- copying a tree between two directory descriptors -----------------------------------------------

class Copier:
    """Copies entries from below one directory fd to below another with *at calls and
    O_NOFOLLOW throughout. `owner`: keep the source's uid/gid (cp -a), else the copier's own."""

    def __init__(self, *, owner: bool, devices: bool = True):
        self.owner = owner  # hardlinks are copied as files, as `docker cp` does across directories
        # a device node a container made (its cgroup keeps it from opening it) must not become
        # one on the host that anyone may open: out of a container, devices are left behind
        self.devices = devices
        self.skipped: list[str] = []

    def copy(self, src_dir: int, src_name: str, dst_dir: int, dst_name: str) -> None:
        st = os.stat(src_name, dir_fd=src_dir, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            self._dir(src_dir, src_name, dst_dir, dst_name, st)
        elif stat.S_ISREG(st.st_mode):
            self._file(src_dir, src_name, dst_dir, dst_name, st)
        elif stat.S_ISLNK(st.st_mode):
            _remove_non_dir(dst_dir, dst_name)
            os.symlink(os.readlink(src_name, dir_fd=src_dir), dst_name, dir_fd=dst_dir)
            self._meta(dst_dir, dst_name, st, chmod=False)
        else:  # device, fifo, socket: as root may
            if stat.S_ISSOCK(st.st_mode):
                return
            if not self.devices and (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                self.skipped.append(src_name)
                return
            _remove_non_dir(dst_dir, dst_name)
            os.mknod(dst_name, st.st_mode, st.st_rdev, dir_fd=dst_dir)
            self._meta(dst_dir, dst_name, st, chmod=True)

    def contents(self, src: int, dst: int) -> None:
        for name in sorted(os.listdir(src)):
            self.copy(src, name, dst, name)

    def _dir(self, src_dir: int, src_name: str, dst_dir: int, dst_name: str, st: os.stat_result) -> None:
        src = os.open(src_name, _DIR, dir_fd=src_dir)
        try:
            dst = make_dir(dst_dir, dst_name)
            try:
                self.contents(src, dst)
                os.chmod(dst, stat.S_IMODE(st.st_mode))
                if self.owner:
                    os.chown(dst, st.st_uid, st.st_gid)
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)

    def _file(self, src_dir: int, src_name: str, dst_dir: int, dst_name: str, st: os.stat_result) -> None:
        src = os.open(src_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
        try:
            _remove_non_dir(dst_dir, dst_name)
            dst = os.open(dst_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                          0o600, dir_fd=dst_dir)
            try:
                while data := os.read(src, CHUNK):
                    _write_all(dst, data)
                self._meta_fd(dst, st)
            finally:
                os.close(dst)
        finally:
            os.close(src)

    def _meta_fd(self, fd: int, st: os.stat_result) -> None:
        if self.owner:
            os.fchown(fd, st.st_uid, st.st_gid)
        os.chmod(fd, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid bits
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))

    def _meta(self, d: int, name: str, st: os.stat_result, *, chmod: bool) -> None:
        if self.owner:
            os.chown(name, st.st_uid, st.st_gid, dir_fd=d, follow_symlinks=False)
        if chmod:
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=d)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=d, follow_symlinks=False)


def make_dir(parent: int, name: str) -> int:
    """An fd on the directory `name` in `parent`, made if missing; a non-directory (a symlink
    included) there is replaced, as Docker's extraction does."""
    try:
        return os.open(name, _DIR, dir_fd=parent)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        os.unlink(name, dir_fd=parent)
    os.mkdir(name, 0o755, dir_fd=parent)
    return os.open(name, _DIR, dir_fd=parent)


def _remove_non_dir(parent: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise SdctrError(f"cannot overwrite the directory {name!r} with a non-directory")
    os.unlink(name, dir_fd=parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# --- tar streams ("-") ------------------------------------------------------------------------------

def write_tar(src_dir: int, name: str, out: IO[bytes]) -> None:
    """`cp CONTAINER:PATH -`: the entry `name` of `src_dir` and everything below it, as a tar
    whose names start with `name`, read through descriptors, never following a symlink."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for arcname, d, entry in _entries(src_dir, name, name):
            st = os.stat(entry, dir_fd=d, follow_symlinks=False)
            info = tarfile.TarInfo(arcname)
            info.mode, info.uid, info.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
            info.mtime = int(st.st_mtime)
            if stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)
                with os.fdopen(fd, "rb") as f:
                    tar.addfile(info, f)
                continue
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(entry, dir_fd=d)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            else:
                continue
            tar.addfile(info)


def _entries(d: int, name: str, arcname: str) -> Iterator[tuple[str, int, str]]:
    yield arcname, d, name
    st = os.stat(name, dir_fd=d, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        return
    fd = os.open(name, _DIR, dir_fd=d)
    try:
        for child in sorted(os.listdir(fd)):
            yield from _entries(fd, child, f"{arcname}/{child}")
    finally:
        os.close(fd)


def extract_tar(stream: IO[bytes], dst: int, *, owner: bool) -> None:
    """`cp - CONTAINER:DIR`: a tar from stdin unpacked below the directory fd `dst`; every name is
    checked (no "..", no absolute path) and every parent opened with O_NOFOLLOW, so an entry can
    neither leave `dst` nor write through a symlink another entry made."""
    from sdctr.oci.layers import Refused, split_name

    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for m in tar:
            try:
                parts = split_name(m.name)
            except Refused as e:
                raise SdctrError(f"the archive's entry {m.name!r}: {e}") from None
            if not parts:
                continue
            parent = _open_no_symlinks(dst, parts[:-1])
            try:
                _extract_one(tar, m, parent, parts[-1], owner=owner)
            finally:
                os.close(parent)


def _open_no_symlinks(root: int, parts: list[str]) -> int:
    """The directory `parts` below `root`, refused (ELOOP) if any of them is a symlink."""
    from sdctr import inroot

    fd, _ = inroot.walk(root, "/".join(parts), no_symlinks=True)
    try:
        return inroot.reopen(fd, _DIR)
    finally:
        os.close(fd)


def _extract_one(tar: tarfile.TarFile, m: tarfile.TarInfo, parent: int, name: str, *, owner: bool) -> None:
    if m.isdir():
        os.close(make_dir(parent, name))
        fd = os.open(name, _DIR, dir_fd=parent)
        try:
            os.chmod(fd, m.mode & 0o7777)
            if owner:
                os.fchown(fd, m.uid, m.gid)
        finally:
            os.close(fd)
        return
    _remove_non_dir(parent, name)
    if m.isreg():
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=parent)
        try:
            src = tar.extractfile(m)
            while src is not None and (data := src.read(CHUNK)):
                _write_all(fd, data)
            if owner:
                os.fchown(fd, m.uid, m.gid)
            os.chmod(fd, m.mode & 0o7777)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)
    elif m.issym():
        os.symlink(m.linkname, name, dir_fd=parent)
        if owner:
            os.chown(name, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
    elif m.isfifo() or m.ischr() or m.isblk():
        kind = stat.S_IFIFO if m.isfifo() else stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        os.mknod(name, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor), dir_fd=parent)
    else:  # hardlinks would need their target resolved below dst: refused rather than guessed
        raise SdctrError(f"the archive's entry {m.name!r}: a hardlink or an unsupported type")


# --- Docker's rules: what goes where ------------------------------------------------------------------

def copy(src_dir: int, src_name: str, dest_parent: int, dest_name: str, dest_text: str, *,
         owner: bool, as_name: str = "", devices: bool = True) -> list[str]:
    """`src_name` of `src_dir` ("." for a directory's contents: SRC ended in "/.") to `dest_name`
    of `dest_parent` ("." for `dest_parent` itself), by `docker cp`'s rules: into an existing
    directory under the source's name, over an existing file, or as a new entry of that name.
    The names of the device nodes left out (devices=False)."""
    copier = Copier(owner=owner, devices=devices)
    src_st = os.stat(src_name, dir_fd=src_dir, follow_symlinks=False)
    try:
        dest_st: os.stat_result | None = os.stat(dest_name, dir_fd=dest_parent, follow_symlinks=False)
    except FileNotFoundError:
        dest_st = None
    if dest_st is not None and stat.S_ISDIR(dest_st.st_mode):
        dest = os.open(dest_name, _DIR, dir_fd=dest_parent)
        try:
            copier.copy(src_dir, src_name, dest, as_name or src_name)
        finally:
            os.close(dest)
    elif stat.S_ISDIR(src_st.st_mode) and dest_st is not None:
        raise SdctrError(f"cannot copy a directory to the file {dest_text}")
    elif dest_st is None and dest_text.endswith("/") and not stat.S_ISDIR(src_st.st_mode):
        raise SdctrError(f"the destination directory {dest_text} does not exist")
    else:
        copier.copy(src_dir, src_name, dest_parent, dest_name)
    return copier.skipped


@contextlib.contextmanager
def container_root(paths: Paths, sd: Systemd, spec: ContainerSpec) -> Iterator[int]:
    """An O_PATH fd on the container's "/": a running one's as its init sees it (its mounts
    included), a stopped one's snapshot activated by its driver (a thin device: `dmsetup create`
    first) and mounted read-write below sdctr's run directory meanwhile."""
    pid = sd.main_pid(spec.unit)
    if pid:
        fd = os.open(f"/proc/{pid}/root", _PATH | os.O_DIRECTORY)
        try:
            yield fd
        finally:
            os.close(fd)
        return
    from sdctr.runtime import hooks
    from sdctr.storage import snapshotter

    snap = hooks.snapshotter_of(paths, spec)
    target = paths.run / "cp" / f"{spec.id}-{os.getpid()}"
    target.mkdir(parents=True)
    try:
        snapshotter.activate(snap, spec.id, hooks.layers_of(paths, spec), target)
        try:
            fd = os.open(target, _PATH | os.O_DIRECTORY)
            try:
                yield fd
            finally:
                os.close(fd)
        finally:
            snap.deactivate(spec.id, target)  # a thin device is removed unless the unit holds it
    finally:
        for d in (target, target.parent):  # the parent: unless another cp uses it
            with contextlib.suppress(OSError):
                d.rmdir()
