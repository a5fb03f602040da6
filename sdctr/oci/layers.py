"""Safe application of one image layer (a tar stream, compressed or not) to a directory.

A layer comes from whoever built the image, so its tar is hostile until proven otherwise. The
rules, checked for every entry before anything is written:

- Names are taken relative to the layer root. A leading ``/`` or ``./`` is dropped, as Docker,
  containerd and GNU tar do (``/etc/passwd`` means the layer's ``etc/passwd``); a ``..``
  component anywhere is refused rather than cleaned, since no honest tool writes one.
- Every parent directory is opened component by component relative to a directory fd with
  O_NOFOLLOW: a symlink (or a non-directory) on the way is refused, never traversed. Docker
  extracts in a chroot and so follows symlinks inside the root; we refuse them, which costs
  nothing for layers that tools produce and closes symlink-then-write-through for good.
- Hardlink targets obey the same rules, must exist in this layer and must not be directories.
- Entries are created with O_EXCL/O_NOFOLLOW and the *at() calls, so a symlink a previous entry
  planted is replaced, not written through.
- OCI whiteouts become what overlayfs reads: ``.wh.NAME`` a 0/0 character device, and
  ``.wh..wh..opq`` the xattr trusted.overlay.opaque=y on its directory. A tar that carries
  trusted.overlay.* xattrs itself is refused (it could forge whiteouts or redirects).
- Bounds against tar bombs, cumulative over the whole archive, since a hostile one spreads its
  weight over many entries: MAX_ENTRIES entries; PATH_MAX/NAME_MAX names; no single read of the
  stream above MAX_READ (tarfile reads a whole pax header or GNU long name in one read); one
  entry's headers (pax records, long names, sparse map) within MAX_ENTRY_HEADERS and all of the
  archive's within MAX_HEADERS; its files within MAX_SIZE bytes (and the free space of the
  target), a sparse file counted at the size it declares, since that is what unpacking writes.
- No history: tarfile's TarFile keeps every member it has read (with its pax headers) in
  ``.members``, so 2,000 entries with 1 MiB pax records each would pin 2 GiB; ours forgets
  each entry once the next is read, and drops global pax headers (Docker ignores them; tarfile
  would accumulate them for the rest of the archive).

Python's tarfile parses headers and reads member data, nothing more: its extraction filters
are missing before 3.11.4 and know nothing of whiteouts.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import io
import os
import stat
import subprocess
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn, Protocol

from sdctr.external import popen
from sdctr.log import SdctrError
from sdctr.record import Record

MAX_ENTRIES = 1_000_000  # the biggest distribution images hold a few hundred thousand files
MAX_PATH = 4096  # PATH_MAX, in bytes
MAX_NAME = 255  # NAME_MAX, in bytes
MAX_READ = 4 * 1024 * 1024  # pax headers and long names are a few KiB in honest archives
# Go's archive/tar (Docker's and containerd's reader) bounds each pax header, long name and sparse
# map to 1 MiB; we bound all of one entry's together to that
MAX_ENTRY_HEADERS = 1024 * 1024
# all of an archive's headers beyond each entry's own 512-byte block: GNU tar's posix format
# spends 1 KiB on every entry, so this is 256k such entries; a pax flood stops here
MAX_HEADERS = 256 * 1024 * 1024
MAX_SIZE = 256 * 1024 * 1024 * 1024  # bytes of file content in one layer, sparse files in full
MAX_TRAILER = 1024 * 1024  # bytes allowed after the end-of-archive blocks (record padding)
CHUNK = 256 * 1024

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_XATTR_PAX = "SCHILY.xattr."
# xattrs that describe the host, not the image: the host's policy labels files itself
_SKIPPED_XATTRS = ("security.selinux",)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"


class LayerInfo(Record):
    diff_id: str  # "sha256:<hex>" of the uncompressed tar
    size: int  # bytes of file content
    entries: int


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Refused(Exception):
    """An entry (or the stream) breaks a rule; turned into SdctrError with image and digest."""


def compression(head: bytes) -> str:
    """'gzip', 'zstd' or '' (plain tar), from the first bytes of a layer."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return ""


def inspect_layer(stream: Readable, *, image: str, digest: str) -> LayerInfo:
    """Reads a whole layer applying every name rule, writing nothing: its diff id and size."""
    with _Walk(stream, image, digest) as walk:
        for _ in walk:
            pass
    return walk.info()


def apply_layer(stream: Readable, target: Path, *, image: str, digest: str,
                diff_id: str | None = None, onto_lower: bool = False) -> LayerInfo:
    """Unpacks a layer into ``target`` (an existing directory that only we write to).

    With ``onto_lower``, ``target`` holds the layers below (a thin snapshot) and whiteouts act
    on them: ``.wh.NAME`` removes NAME, ``.wh..wh..opq`` empties its directory of everything this
    layer did not write, instead of the markers overlayfs reads.

    With ``diff_id``, the uncompressed stream must hash to it. Any refusal raises SdctrError
    naming the image, the layer digest and the entry; the caller discards ``target``.
    """
    root = os.open(target, _DIR_FLAGS)
    try:
        fs = os.fstatvfs(root)
        with _Walk(stream, image, digest, free=fs.f_bavail * fs.f_frsize) as walk:
            writer = _Writer(root, walk.tar, onto_lower=onto_lower)
            for member, parts in walk:
                with walk.guard(writing=True):
                    writer.apply(member, parts)
            with walk.guard(writing=True):
                writer.finish()
        info = walk.info()
    finally:
        os.close(root)
    if diff_id is not None and info.diff_id != diff_id:
        raise SdctrError(f"image {image}: layer {digest} unpacks to {info.diff_id}, but the image "
                         f"says {diff_id}", hint="the blob is corrupt; remove the image and import or "
                         "pull it again")
    return info


# --- reading: decompression, hashing, bounded reads -----------------------------------------------

class ForwardReader(io.RawIOBase):
    """An uncompressed tar stream as tarfile ("r:") sees it: forward-only, every byte hashed (a
    layer's diff id), no single read above MAX_READ (a header claiming gigabytes is refused, not
    buffered), and short reads from pipes or decompressors filled up."""

    def __init__(self, raw: Readable):
        self.raw = raw
        self.pos = 0
        self.sha = hashlib.sha256()
        self.last = b""
        # while a header is parsed: the position no read may pass, and why (see _Tar.next)
        self.limit: int | None = None
        self.limit_reason = ""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > MAX_READ:
            raise Refused(f"a header asks to read {size} bytes at once (tar bomb?)")
        if self.limit is not None and self.pos + size > self.limit:
            raise Refused(self.limit_reason)
        chunks, want = [], size
        while want:
            data = self.raw.read(want)
            if not data:
                break
            chunks.append(data)
            want -= len(data)
        out = b"".join(chunks)
        self.sha.update(out)
        self.pos += len(out)
        self.last = out
        return out

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        # tarfile in "r:" mode only ever seeks forward to skip data; reading it keeps the hash whole
        if whence != io.SEEK_SET or offset < self.pos:
            raise io.UnsupportedOperation("the layer stream only moves forward")
        while self.pos < offset:
            if not self.read(min(CHUNK, offset - self.pos)):
                break
        return self.pos

    def drain(self) -> None:
        extra = 0
        while data := self.read(CHUNK):
            extra += len(data)
            if extra > MAX_TRAILER:
                raise Refused(f"more than {MAX_TRAILER} bytes follow the end of the archive")


@contextlib.contextmanager
def decompressed(stream: Readable) -> Iterator[Readable]:
    head = b""
    while len(head) < 4 and (more := stream.read(4 - len(head))):
        head += more
    kind = compression(head)
    rest: Readable = _Prefixed(head, stream)
    if kind == "gzip":
        yield _Gunzip(rest)
    elif kind == "zstd":
        with _zstd(rest, stream) as z:
            yield z
    else:
        yield rest


@contextlib.contextmanager
def _zstd(rest: Readable, stream: Readable) -> Iterator[Readable]:
    try:
        zstandard: Any = importlib.import_module("zstandard")
    except ImportError:
        zstandard = None
    if zstandard is not None:
        with zstandard.ZstdDecompressor().stream_reader(rest) as reader:
            yield reader
        return
    # No module: the zstd command, reading the blob's own fd.
    try:
        fd = getattr(stream, "fileno")()  # noqa: B009 (not every Readable has one)
        os.lseek(fd, 0, os.SEEK_SET)
    except (AttributeError, OSError, io.UnsupportedOperation):
        raise Refused("zstd layers need the zstandard module or a seekable file") from None
    try:
        proc = popen(["zstd", "-dcq"], stdin=fd, stderr=subprocess.DEVNULL)
    except SdctrError:
        raise Refused("zstd layers need the zstandard module or the zstd command") from None
    assert proc.stdout is not None
    try:
        yield proc.stdout
    finally:
        proc.stdout.close()
        proc.kill()
        proc.wait()


class _Gunzip:
    """gzip members, one after another, decompressed by zlib in C, which checks each member's CRC
    and length. gzip.GzipFile does the same reading 8 KiB at a time with a CRC loop of its own:
    a third of a pull's time on a 200 MB image."""

    def __init__(self, raw: Readable):
        self.raw = raw
        self.z = zlib.decompressobj(zlib.MAX_WBITS | 16)  # the gzip wrapper, not zlib's

    def read(self, size: int = -1) -> bytes:
        if size < 0:  # everything: what a file's read() promises
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        if size == 0:
            return b""
        limit = size
        while True:
            if self.z.eof:  # a member ended: the next one follows, after zero padding if any
                feed = self.z.unused_data.lstrip(b"\0")  # (unconsumed_tail repeats it)
                while not feed:
                    more = self.raw.read(CHUNK)
                    if not more:
                        return b""
                    feed = more.lstrip(b"\0")
                self.z = zlib.decompressobj(zlib.MAX_WBITS | 16)
            elif self.z.unconsumed_tail:  # what the last read's size limit left
                feed = self.z.unconsumed_tail
            else:
                feed = self.raw.read(CHUNK)
                if not feed:
                    raise EOFError("the gzip stream ends before its last member does")
            data = self.z.decompress(feed, limit)
            if data:
                return data


class _Prefixed:
    """The bytes already read to sniff the compression, then the rest of the stream."""

    def __init__(self, head: bytes, rest: Readable):
        self.head, self.rest = head, rest

    def read(self, size: int = -1) -> bytes:
        if not self.head:
            return self.rest.read(size)
        n = len(self.head) if size < 0 else min(size, len(self.head))
        out, self.head = self.head[:n], self.head[n:]
        return out


class _Tar(tarfile.TarFile):
    """tarfile's reader without its memory, for a stream that only moves forward (a ForwardReader):
    no member list, no global pax headers, and every entry's headers read within a budget, the
    entry's own and what is left of the archive's. Open with ``open_tar``."""

    fileobj: ForwardReader
    firstmember: tarfile.TarInfo | None  # (tarfile's own, undeclared in its stubs)
    members: list[tarfile.TarInfo]
    pax_headers: dict[str, str]
    headers = 0  # bytes of headers read so far beyond each entry's own block (see MAX_HEADERS)
    count = 0  # entries read so far

    def next(self) -> tarfile.TarInfo | None:
        if self.firstmember is not None:  # read (and counted) by the constructor
            return super().next()
        r = self.fileobj
        if r.pos < self.offset:  # the previous entry's data, unread: not a header
            r.seek(self.offset)
        start, left = r.pos, MAX_HEADERS - self.headers
        if left < MAX_ENTRY_HEADERS:
            r.limit_reason = f"the archive's headers exceed {MAX_HEADERS} bytes in all (a pax flood?)"
        else:
            r.limit_reason = (f"the headers of entry {self.count + 1} (pax records, long names, sparse "
                              f"map) exceed {MAX_ENTRY_HEADERS} bytes")
        r.limit = start + tarfile.BLOCKSIZE + min(left, MAX_ENTRY_HEADERS)
        try:
            member = super().next()
        finally:
            r.limit = None
        if member is not None:
            self.count += 1
            self.headers += r.pos - start - tarfile.BLOCKSIZE
        # no history: tarfile appends every member to .members and keeps global pax headers
        # (which Docker ignores) for the rest of the archive
        self.members.clear()
        self.pax_headers.clear()
        return member

    def __iter__(self) -> Iterator[tarfile.TarInfo]:
        while (member := self.next()) is not None:
            yield member


def open_tar(reader: ForwardReader) -> tarfile.TarFile:
    """A TarFile over ``reader`` with the bounds above: read it with next() or iteration and
    extractfile() of the entry just read, nothing that looks an entry up by name."""
    return _Tar.open(fileobj=reader, mode="r:", encoding="utf-8", errors="surrogateescape")


class _Walk:
    """Iterates over a layer's entries as (member, name components), applying the name rules."""

    def __init__(self, stream: Readable, image: str, digest: str, *, free: int | None = None):
        self.image, self.digest = image, digest
        self.current: str | None = None
        self._stack = contextlib.ExitStack()
        self._stream = stream
        self.entries = 0
        self.size = 0
        self.free = free  # bytes free where the layer is unpacked (None: nothing is written)

    def __enter__(self) -> _Walk:
        try:
            with self.guard(what="not a tar archive"):
                self.reader = ForwardReader(self._stack.enter_context(decompressed(self._stream)))
                self.tar = open_tar(self.reader)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def refuse(self, reason: str) -> NoReturn:
        entry = f": entry {self.current!r}" if self.current is not None else ""
        raise SdctrError(f"image {self.image}: layer {self.digest}{entry}: {reason}",
                         hint="the layer is malformed or hostile; nothing was written outside its "
                         "own directory")

    @contextlib.contextmanager
    def guard(self, *, writing: bool = False, what: str = "unreadable layer") -> Iterator[None]:
        """Turns what a bad stream or entry raises into one refusal naming image, layer, entry."""
        try:
            yield
        except Refused as e:
            self.refuse(str(e))
        except OSError as e:
            if writing:
                self.refuse(f"{e.strerror or e} while writing it")
            self.refuse(f"{what} ({e})")
        except (tarfile.TarError, EOFError, zlib.error, ValueError) as e:
            self.refuse(f"{what} ({e})")

    def __iter__(self) -> Iterator[tuple[tarfile.TarInfo, list[str]]]:
        while True:
            self.current = None
            with self.guard():
                member = self.tar.next()
                if member is None:
                    break
                self.current = member.name
                self.entries += 1
                if self.entries > MAX_ENTRIES:
                    raise Refused(f"more than {MAX_ENTRIES} entries (tar bomb?)")
                parts = check_member(member)
                if member.isreg():
                    self._count(member.size)
            yield member, parts
        with self.guard():
            self._check_end()

    def _count(self, size: int) -> None:
        """A regular file's size as it declares it: what writing it costs, holes included."""
        self.size += size
        if self.size > MAX_SIZE:
            raise Refused(f"its files declare more than {MAX_SIZE} bytes in all (a sparse or "
                          "compression bomb?)")
        if self.free is not None and self.size > self.free:
            raise Refused(f"its files declare more than the {self.free} bytes free where it is "
                          "unpacked")

    def _check_end(self) -> None:
        # tarfile treats a truncated or corrupt header as the end of the archive; we want the
        # zero block that really ends one, or a cut-off download would import half an image
        if self.reader.pos != self.tar.offset + tarfile.BLOCKSIZE or self.reader.last.strip(b"\0"):
            raise Refused(f"the archive has no end-of-archive block after byte {self.tar.offset} "
                           "(truncated or corrupt)")
        self.reader.drain()

    def info(self) -> LayerInfo:
        return LayerInfo("sha256:" + self.reader.sha.hexdigest(), self.size, self.entries)


def split_name(name: str) -> list[str]:
    """A tar name as components below the layer root; refuses what could leave it."""
    if "\0" in name:
        raise Refused("the name contains a NUL byte")
    if len(os.fsencode(name)) > MAX_PATH:
        raise Refused(f"the name is longer than {MAX_PATH} bytes")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Refused("the name goes up a directory ('..')")
    for p in parts:
        if len(os.fsencode(p)) > MAX_NAME:
            raise Refused(f"a name component is longer than {MAX_NAME} bytes")
    return parts


def check_member(member: tarfile.TarInfo) -> list[str]:
    """The checks that need no file system: name, type, link target, whiteout, xattrs."""
    parts = split_name(member.name)
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()
            or member.ischr() or member.isblk() or member.isfifo()):
        raise Refused(f"unsupported entry type {member.type!r}")
    if not parts and not member.isdir():
        raise Refused("the entry would replace the layer root")
    base = parts[-1] if parts else ""
    if base.startswith(WHITEOUT) and base != OPAQUE:
        hidden = base[len(WHITEOUT):]
        if hidden in ("", ".", "..") or hidden.startswith(WHITEOUT):
            raise Refused("not a valid whiteout: it must name one entry of its directory")
    if member.islnk():
        if not split_name(member.linkname):
            raise Refused("a hardlink to the layer root")
    for key in member.pax_headers:
        if key.startswith(_XATTR_PAX + "trusted.overlay."):
            raise Refused(f"the entry carries the overlay xattr {key[len(_XATTR_PAX):]}")
    return parts


# --- writing ---------------------------------------------------------------------------------------

class _Writer:
    """Creates entries below a root directory fd, never following a symlink on the way."""

    def __init__(self, root: int, tar: tarfile.TarFile, *, onto_lower: bool = False):
        self.root, self.tar, self.onto_lower = root, tar, onto_lower
        self.written: set[tuple[str, ...]] = set()  # onto_lower: what an opaque directory keeps
        self.as_root = os.geteuid() == 0
        # directory modes and mtimes wait for the end: writing children changes the mtime, and
        # a read-only mode would stop them being written at all. Only those two numbers are kept,
        # not the entry (its pax headers may be a MiB)
        self.dirs: dict[tuple[str, ...], tuple[int, float]] = {}  # the last entry for a path wins

    def apply(self, m: tarfile.TarInfo, parts: list[str]) -> None:
        if not parts:
            self._meta_fd(self.root, m, mode=False)
            self.dirs[()] = (m.mode, m.mtime)
            return
        parent = self._open_dir(parts[:-1], create=True)
        try:
            self._create(parent, parts, m)
        finally:
            os.close(parent)

    def _create(self, parent: int, parts: list[str], m: tarfile.TarInfo) -> None:
        name = parts[-1]
        if self.onto_lower and name.startswith(WHITEOUT):
            self._whiteout_lower(parent, parts)
            return
        self.written.update(tuple(parts[:i]) for i in range(1, len(parts) + 1))
        if name == OPAQUE:
            os.setxattr(parent, OPAQUE_XATTR, b"y")
        elif name.startswith(WHITEOUT):
            hidden = name[len(WHITEOUT):]
            _remove_at(parent, hidden)
            os.mknod(hidden, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
        elif m.isdir():
            if not _is_dir_at(parent, name):
                _remove_at(parent, name)
                os.mkdir(name, 0o700, dir_fd=parent)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            try:
                self._meta_fd(fd, m, mode=False)
            finally:
                os.close(fd)
            self.dirs[tuple(parts)] = (m.mode, m.mtime)
        elif m.isreg():
            self._file(parent, name, m)
        elif m.issym():
            _remove_at(parent, name)
            os.symlink(m.linkname, name, dir_fd=parent)
            self._meta_path(parent, name, m, chmod=False)
        elif m.islnk():
            self._hardlink(parent, name, m)
        else:  # character or block device, fifo: kept, as root
            _remove_at(parent, name)
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
            os.mknod(name, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=parent)
            self._meta_path(parent, name, m, chmod=True)

    def _whiteout_lower(self, parent: int, parts: list[str]) -> None:
        """A whiteout acting on the layers below: NAME removed, or an opaque directory emptied
        of everything this layer did not write."""
        if parts[-1] == OPAQUE:
            for child in os.listdir(parent):
                if (*parts[:-1], child) not in self.written:
                    _remove_at(parent, child)
        else:
            _remove_at(parent, parts[-1][len(WHITEOUT):])

    def _file(self, parent: int, name: str, m: tarfile.TarInfo) -> None:
        _remove_at(parent, name)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=parent)
        try:
            src = self.tar.extractfile(m)
            assert src is not None  # a regular file always has data
            while data := src.read(CHUNK):
                _write_all(fd, data)
            self._meta_fd(fd, m)
        finally:
            os.close(fd)

    def _hardlink(self, parent: int, name: str, m: tarfile.TarInfo) -> None:
        src_parts = split_name(m.linkname)
        src_parent = self._open_dir(src_parts[:-1], create=False)
        try:
            try:
                st = os.stat(src_parts[-1], dir_fd=src_parent, follow_symlinks=False)
            except FileNotFoundError:
                raise Refused(f"hardlink to {m.linkname!r}, which is not in the layer") from None
            if stat.S_ISDIR(st.st_mode):
                raise Refused(f"hardlink to the directory {m.linkname!r}")
            with contextlib.suppress(FileNotFoundError):
                dst = os.stat(name, dir_fd=parent, follow_symlinks=False)
                if (dst.st_dev, dst.st_ino) == (st.st_dev, st.st_ino):
                    return
            _remove_at(parent, name)
            os.link(src_parts[-1], name, src_dir_fd=src_parent, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(src_parent)

    def _open_dir(self, parts: list[str], *, create: bool) -> int:
        """An fd on the directory at ``parts``, walked one component at a time with O_NOFOLLOW."""
        fd = os.dup(self.root)
        try:
            for i, comp in enumerate(parts):
                try:
                    nxt = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise Refused(f"{'/'.join(parts[:i + 1])!r} is not in the layer") from None
                    os.mkdir(comp, 0o755, dir_fd=fd)  # Docker makes missing parents the same way
                    nxt = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise Refused(f"{'/'.join(parts[:i + 1])!r} is a symlink or not a directory; "
                                       "refusing to go through it") from None
                    raise
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _meta_fd(self, fd: int, m: tarfile.TarInfo, *, mode: bool = True) -> None:
        if self.as_root:
            os.fchown(fd, m.uid, m.gid)
        for key, value in _xattrs(m):
            os.setxattr(fd, key, value)
        if mode:  # after chown, which clears setuid and setgid
            os.fchmod(fd, m.mode & 0o7777)
            _utime(fd, m.mtime)

    def _meta_path(self, parent: int, name: str, m: tarfile.TarInfo, *, chmod: bool) -> None:
        """Symlinks and device nodes cannot be opened for writing: *at() calls, no following."""
        if self.as_root:
            os.chown(name, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        path = f"/proc/self/fd/{parent}/{name}"  # the xattr calls have no dir_fd
        for key, value in _xattrs(m):
            try:
                os.setxattr(path, key, value, follow_symlinks=False)
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP):  # user.* on a symlink: not allowed
                    raise
        if chmod:  # a node we just made, so following is moot; Linux has no lchmod
            os.chmod(name, m.mode & 0o7777, dir_fd=parent)
        with contextlib.suppress(OverflowError, ValueError):
            ns = int(m.mtime * 1_000_000_000)
            os.utime(name, ns=(ns, ns), dir_fd=parent, follow_symlinks=False)

    def finish(self) -> None:
        for parts, (mode, mtime) in sorted(self.dirs.items(), key=lambda d: -len(d[0])):  # children first
            try:
                fd = self._open_dir(list(parts), create=False)
            except (Refused, OSError):
                continue  # a later entry replaced the directory
            try:
                os.fchmod(fd, mode & 0o7777)
                _utime(fd, mtime)
            finally:
                os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _utime(fd: int, mtime: float) -> None:
    with contextlib.suppress(OverflowError, ValueError):
        ns = int(mtime * 1_000_000_000)
        os.utime(fd, ns=(ns, ns))


def _xattrs(m: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    for key, value in m.pax_headers.items():
        if key.startswith(_XATTR_PAX):
            name = key[len(_XATTR_PAX):]
            if name not in _SKIPPED_XATTRS:
                yield name, value.encode("utf-8", "surrogateescape")


def _is_dir_at(parent: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _remove_at(parent: int, name: str) -> None:
    """Removes what an earlier entry put at ``name``, recursively, never following a symlink."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent)
        return
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    try:
        for child in os.listdir(fd):
            _remove_at(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)
