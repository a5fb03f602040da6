"""The layer extractor: hostile tars are refused without touching anything outside the target,
and honest ones come out with modes, links, times, xattrs, devices and whiteouts intact."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdctr.log import SdctrError
from sdctr.oci import layers
from sdctr.oci.layers import apply_layer, inspect_layer

IMAGE, DIGEST = "evil:latest", "sha256:" + "ab" * 32


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", *, linkname: str = "",
          mode: int = 0o644, uid: int = 0, gid: int = 0, mtime: int = 1_600_000_000,
          pax: dict[str, str] | None = None, dev: tuple[int, int] = (0, 0)) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, linkname, mode, mtime
    info.uid, info.gid = uid, gid
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.devmajor, info.devminor = dev
    info.pax_headers = pax or {}
    return info, data


def make_tar(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info, data in entries:
            t.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def d(name: str, mode: int = 0o755, **kw: object) -> tuple[tarfile.TarInfo, bytes]:
    return entry(name, tarfile.DIRTYPE, mode=mode, **kw)  # type: ignore[arg-type]


def tree(root: Path, skip: Path) -> dict[str, tuple[int, int, bytes | str | None]]:
    """Everything under ``root`` but ``skip``: type and mode, size, content or link target."""
    out: dict[str, tuple[int, int, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == skip or skip in Path(dirpath).parents:
            continue
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            if p == skip:
                continue
            st = p.lstat()
            body: bytes | str | None = None
            if stat.S_ISREG(st.st_mode):
                body = p.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(p)
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, body)
    return out


class Box:
    """A target directory next to an 'outside' holding a sentinel the tar tries to reach."""

    def __init__(self, tmp: Path):
        self.root = tmp
        self.outside = tmp / "outside"
        self.outside.mkdir()
        self.sentinel = self.outside / "sentinel"
        self.sentinel.write_text("untouched\n")
        self.target = tmp / "target"
        self.target.mkdir()
        self.before = tree(tmp, self.target)

    def apply(self, data: bytes, **kw: object) -> layers.LayerInfo:
        return apply_layer(io.BytesIO(data), self.target, image=IMAGE, digest=DIGEST, **kw)  # type: ignore[arg-type]

    def refused(self, data: bytes, entry_name: str, match: str = "") -> SdctrError:
        with pytest.raises(SdctrError) as e:
            self.apply(data)
        msg = str(e.value)
        assert IMAGE in msg and DIGEST in msg and repr(entry_name) in msg, msg
        assert match in msg, msg
        self.assert_outside_untouched()
        return e.value

    def assert_outside_untouched(self) -> None:
        assert self.sentinel.read_text() == "untouched\n"
        assert tree(self.root, self.target) == self.before


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    yield Box(tmp_path)


# --- hostile layers --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../outside/sentinel", "../escaped", "a/../../escaped", "./../escaped"])
def test_dotdot_is_refused(box: Box, name: str) -> None:
    box.refused(make_tar(entry(name, data=b"pwned")), name, "goes up")


def test_absolute_names_stay_inside_the_target(box: Box) -> None:
    """As Docker and GNU tar do: a leading / means the layer root."""
    name = str(box.sentinel)
    box.apply(make_tar(entry(name, data=b"inside")))
    assert (box.target / name.lstrip("/")).read_bytes() == b"inside"
    box.assert_outside_untouched()


@pytest.mark.parametrize("link", ["../outside", "/", "PLACEHOLDER"])
def test_write_through_a_symlink_is_refused(box: Box, link: str) -> None:
    link = str(box.outside) if link == "PLACEHOLDER" else link
    data = make_tar(entry("esc", tarfile.SYMTYPE, linkname=link), entry("esc/sentinel", data=b"pwned"))
    box.refused(data, "esc/sentinel", "symlink")


def test_symlink_dir_chain_is_refused(box: Box) -> None:
    data = make_tar(entry("a", tarfile.SYMTYPE, linkname="b"),
                    entry("b", tarfile.SYMTYPE, linkname=str(box.outside)),
                    entry("a/new", data=b"pwned"))
    box.refused(data, "a/new", "symlink")


def test_a_file_replaces_a_planted_symlink_instead_of_writing_through(box: Box) -> None:
    box.apply(make_tar(entry("f", tarfile.SYMTYPE, linkname=str(box.sentinel)), entry("f", data=b"mine")))
    assert not (box.target / "f").is_symlink()
    assert (box.target / "f").read_bytes() == b"mine"
    box.assert_outside_untouched()


@pytest.mark.parametrize("linkname", ["../outside/sentinel", "PLACEHOLDER"])
def test_hardlink_to_outside_is_refused(box: Box, linkname: str) -> None:
    absolute = linkname == "PLACEHOLDER"
    linkname = str(box.sentinel) if absolute else linkname
    err = box.refused(make_tar(entry("h", tarfile.LNKTYPE, linkname=linkname)), "h")
    assert "not in the layer" in str(err) if absolute else "goes up" in str(err)


def test_hardlink_through_a_symlink_is_refused(box: Box) -> None:
    data = make_tar(entry("out", tarfile.SYMTYPE, linkname=str(box.outside)),
                    entry("h", tarfile.LNKTYPE, linkname="out/sentinel"))
    box.refused(data, "h", "symlink")
    assert box.sentinel.stat().st_nlink == 1


def test_hardlink_to_a_directory_is_refused(box: Box) -> None:
    box.refused(make_tar(d("dir"), entry("h", tarfile.LNKTYPE, linkname="dir")), "h", "directory")


@pytest.mark.parametrize("name", ["../.wh.sentinel", ".wh...", "dir/.wh..", "x/../../.wh.outside"])
def test_whiteouts_naming_a_path_outside_are_refused(box: Box, name: str) -> None:
    box.refused(make_tar(d("dir"), entry(name)), name)


def test_whiteout_through_a_symlink_is_refused(box: Box) -> None:
    data = make_tar(entry("out", tarfile.SYMTYPE, linkname=str(box.outside)), entry("out/.wh.sentinel"))
    box.refused(data, "out/.wh.sentinel", "symlink")


def test_overlay_xattrs_in_the_tar_are_refused(box: Box) -> None:
    pax = {"SCHILY.xattr.trusted.overlay.redirect": "/etc"}
    box.refused(make_tar(d("dir", pax=pax)), "dir", "overlay xattr")


def test_too_many_entries_is_refused(box: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layers, "MAX_ENTRIES", 50)
    box.refused(make_tar(*(entry(f"f{i}") for i in range(51))), "f50", "more than 50 entries")


def test_names_beyond_path_max_and_name_max_are_refused(box: Box) -> None:
    long_path = "/".join(["d" * 200] * 21)  # 4220 bytes
    box.refused(make_tar(entry(long_path)), long_path, "longer than 4096")
    box.refused(make_tar(entry("n" * 256)), "n" * 256, "longer than 255")


def test_a_huge_header_is_refused_before_it_is_buffered(box: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layers, "MAX_READ", 64 * 1024)
    data = make_tar(entry("f", pax={"SCHILY.xattr.user.big": "x" * 200_000}))
    with pytest.raises(SdctrError, match="asks to read"):
        box.apply(data)
    box.assert_outside_untouched()


def test_truncated_and_non_tar_streams_are_refused(box: Box) -> None:
    data = make_tar(entry("a", data=b"x" * 5000), entry("b", data=b"y"))
    for cut in (data[:1536], data[:512 * 13], data[:-1024 * 9]):  # mid-data, mid-archive, before the end
        with pytest.raises(SdctrError, match=IMAGE):
            box.apply(cut)
    with pytest.raises(SdctrError, match="not a tar archive"):
        box.apply(b"this is not a tar archive" * 40)
    with pytest.raises(SdctrError, match="not a tar archive"):
        box.apply(b"")
    box.assert_outside_untouched()


def test_diff_id_mismatch_is_an_error(box: Box) -> None:
    with pytest.raises(SdctrError, match="unpacks to sha256:"):
        box.apply(make_tar(entry("f")), diff_id="sha256:" + "0" * 64)


def test_inspect_applies_the_name_rules_and_writes_nothing(box: Box) -> None:
    with pytest.raises(SdctrError, match="goes up"):
        inspect_layer(io.BytesIO(make_tar(entry("../x"))), image=IMAGE, digest=DIGEST)
    data = make_tar(d("bin"), entry("bin/sh", data=b"12345"))
    info = inspect_layer(io.BytesIO(data), image=IMAGE, digest=DIGEST)
    assert info == layers.LayerInfo("sha256:" + hashlib.sha256(data).hexdigest(), 5, 2)
    assert list(box.target.iterdir()) == []


# --- honest layers ---------------------------------------------------------------------------------

def test_files_dirs_modes_links_and_times(box: Box) -> None:
    data = make_tar(
        d(".", 0o751),
        d("bin"),
        entry("bin/busybox", data=b"\x7fELF", mode=0o755),
        entry("bin/sh", tarfile.SYMTYPE, linkname="busybox"),
        entry("bin/abs", tarfile.SYMTYPE, linkname="/etc/passwd"),  # kept as is; never followed here
        entry("bin/su", data=b"su", mode=0o4755),
        entry("bin/wall", data=b"w", mode=0o2755),
        d("tmp", 0o1777),
        d("ro", 0o555),
        entry("ro/file", data=b"in a read-only dir", mode=0o400),
        entry("bin/ln", tarfile.LNKTYPE, linkname="bin/busybox"),
        entry("nodir/auto", data=b"parent made on the fly"),
        entry("f", pax={"SCHILY.xattr.user.note": "caf\u00e9"}),
    )
    info = box.apply(data)
    t = box.target
    assert info.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert stat.S_IMODE(t.stat().st_mode) == 0o751
    assert (t / "bin/busybox").read_bytes() == b"\x7fELF"
    assert stat.S_IMODE((t / "bin/busybox").stat().st_mode) == 0o755
    assert os.readlink(t / "bin/sh") == "busybox"
    assert os.readlink(t / "bin/abs") == "/etc/passwd"
    assert stat.S_IMODE((t / "bin/su").stat().st_mode) == 0o4755
    assert stat.S_IMODE((t / "bin/wall").stat().st_mode) == 0o2755
    assert stat.S_IMODE((t / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((t / "ro").stat().st_mode) == 0o555
    assert (t / "ro/file").read_bytes() == b"in a read-only dir"
    assert (t / "bin/ln").stat().st_ino == (t / "bin/busybox").stat().st_ino
    assert (t / "nodir/auto").exists()
    assert (t / "bin/busybox").stat().st_mtime == 1_600_000_000
    assert (t / "bin").stat().st_mtime == 1_600_000_000  # set after its children were written
    assert os.getxattr(t / "f", "user.note") == "caf\u00e9".encode()
    box.assert_outside_untouched()


def test_later_entries_replace_earlier_ones(box: Box) -> None:
    box.apply(make_tar(entry("x", data=b"1"), entry("x", data=b"2"),
                       d("y"), entry("y/in"), entry("y", data=b"f"),
                       d("z", 0o700), d("z", 0o755)))
    assert (box.target / "x").read_bytes() == b"2"
    assert (box.target / "y").read_bytes() == b"f"
    assert stat.S_IMODE((box.target / "z").stat().st_mode) == 0o755


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_compressed_layers_hash_to_the_uncompressed_diff_id(box: Box, tmp_path: Path, compress: str) -> None:
    data = make_tar(d("etc"), entry("etc/hostname", data=b"box\n"))
    if compress == "gzip":
        blob = gzip.compress(data)
    else:
        blob = subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout
    path = tmp_path / "blob"
    path.write_bytes(blob)
    with open(path, "rb") as f:
        info = apply_layer(f, box.target, image=IMAGE, digest=DIGEST,
                           diff_id="sha256:" + hashlib.sha256(data).hexdigest())
    assert info.size == 4
    assert (box.target / "etc/hostname").read_bytes() == b"box\n"


def test_gzip_members_padding_and_corruption(box: Box) -> None:
    """What gzip(1) accepts is read (several members, zero padding after one); a bad checksum, a
    cut stream or trailing garbage is refused, as `gzip -t` refuses them."""
    big = os.urandom(3 << 20)  # larger than one read: the decompressor hands it over in pieces
    data = make_tar(entry("etc/one", data=big), entry("etc/two", data=b"two\n"))
    cut = len(data) // 2
    members = gzip.compress(data[:cut]) + b"\0" * 10 + gzip.compress(data[cut:]) + b"\0" * 3
    info = box.apply(members, diff_id="sha256:" + hashlib.sha256(data).hexdigest())
    assert info.size == len(big) + 4 and (box.target / "etc/one").read_bytes() == big
    whole = gzip.compress(data)
    bad_crc = bytearray(whole)
    bad_crc[-6] ^= 1
    for broken, why in ((bytes(bad_crc), "incorrect data check"), (whole[:-100], "ends before"),
                        (whole + b"garbage", "incorrect header check")):
        shutil.rmtree(box.target)
        box.target.mkdir()
        with pytest.raises(SdctrError, match=why):
            box.apply(broken)
        box.assert_outside_untouched()


# --- root only: ownership, devices, whiteouts (mknod and trusted.* xattrs need root) --------------

@pytest.mark.host
def test_ownership_and_setuid_survive_chown(box: Box) -> None:
    box.apply(make_tar(d("home", uid=1000, gid=1000),
                       entry("home/su", data=b"x", mode=0o6755, uid=1234, gid=5678),
                       entry("home/l", tarfile.SYMTYPE, linkname="su", uid=42, gid=43)))
    st = (box.target / "home/su").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o6755)
    assert (box.target / "home").stat().st_uid == 1000
    assert (box.target / "home/l").lstat().st_uid == 42


@pytest.mark.host
def test_device_nodes_and_fifos_are_kept(box: Box) -> None:
    box.apply(make_tar(d("dev"), entry("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
                       entry("dev/loop9", tarfile.BLKTYPE, mode=0o660, dev=(7, 9)),
                       entry("dev/fifo", tarfile.FIFOTYPE, mode=0o600)))
    null = (box.target / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3
    assert stat.S_IMODE(null.st_mode) == 0o666
    assert stat.S_ISBLK((box.target / "dev/loop9").lstat().st_mode)
    assert stat.S_ISFIFO((box.target / "dev/fifo").lstat().st_mode)


@pytest.mark.host
def test_whiteouts_become_overlay_whiteouts_and_opaque_dirs(box: Box) -> None:
    box.apply(make_tar(d("etc"), entry("etc/.wh.motd"),
                       d("var"), entry("var/.wh..wh..opq"), entry("var/new")))
    motd = (box.target / "etc/motd").lstat()
    assert stat.S_ISCHR(motd.st_mode) and motd.st_rdev == 0
    assert not (box.target / "etc/.wh.motd").exists()
    assert os.getxattr(box.target / "var", "trusted.overlay.opaque") == b"y"
    assert not (box.target / "var/.wh..wh..opq").exists()
    assert (box.target / "var/new").exists()
    box.assert_outside_untouched()


# --- cumulative bounds: floods and bombs spread over many entries ---------------------------------

# Reads a layer from stdin and prints the refusal (or "accepted") and then its own peak RSS in KiB:
# a process of its own, so that the peak is the reader's and nothing else's.
_READER = """
import sys
from sdctr.log import SdctrError
from sdctr.oci.layers import inspect_layer
try:
    info = inspect_layer(sys.stdin.buffer, image="flood:1", digest="sha256:" + "ab" * 32)
    print("accepted", info.entries)
except SdctrError as e:
    print(e)
status = open("/proc/self/status").read()
print(next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")))
"""


def read_in_a_process(chunks: Iterator[bytes]) -> tuple[list[str], int]:
    """The reader's output lines (the refusal, or "accepted N") and its peak RSS in MiB."""
    proc = subprocess.Popen([sys.executable, "-c", _READER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        with contextlib.suppress(BrokenPipeError):  # it stops reading when it refuses
            for chunk in chunks:
                proc.stdin.write(chunk)
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        out = proc.stdout.read().decode()
        proc.wait(timeout=60)
    lines = out.splitlines()
    assert proc.returncode == 0 and lines[-1].isdigit(), out
    return lines[:-1], int(lines[-1]) // 1024


def pax_flood(entries: int) -> Iterator[bytes]:
    """``entries`` files, each with a pax record just within one entry's bound: together far above
    the archive's. Made as it is sent, so that the sender holds one entry."""
    info = tarfile.TarInfo("f")
    info.pax_headers = {"comment": "x" * (layers.MAX_ENTRY_HEADERS - 2048)}
    one = info.tobuf(tarfile.PAX_FORMAT)
    for _ in range(entries):
        yield one
    yield b"\0" * 1024


def test_a_pax_flood_is_refused_in_bounded_memory() -> None:
    """Each entry's pax header is within bounds; all together are 260 MiB. The reader before this
    bound kept every entry (and so every header) in TarFile.members: it accepted the flood at a
    peak of 279 MiB (275 MiB refusing it, with the bound but still keeping members). Now it
    refuses it at 22 MiB, holding one header at a time."""
    entries = layers.MAX_HEADERS // layers.MAX_ENTRY_HEADERS + 4
    lines, peak_mib = read_in_a_process(pax_flood(entries))
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"image flood:1: layer sha256:{'ab' * 32}: ")
    assert f"headers exceed {layers.MAX_HEADERS} bytes in all" in lines[0]
    assert peak_mib < 80, f"peak RSS {peak_mib} MiB while reading the flood"


def test_one_entrys_headers_are_bounded_together(box: Box) -> None:
    """Two pax headers chained before one file, each within a single read's bound."""
    half = layers.MAX_ENTRY_HEADERS // 2 + 1024
    first = tarfile.TarInfo("f")
    first.pax_headers = {"comment": "y" * half}
    chained = first.tobuf(tarfile.PAX_FORMAT)[:-512]  # its pax header, without the file's header
    second = tarfile.TarInfo("f")
    second.pax_headers = {"comment": "z" * half}
    data = chained + second.tobuf(tarfile.PAX_FORMAT) + b"\0" * 1024
    with pytest.raises(SdctrError, match=f"entry 1 .* exceed {layers.MAX_ENTRY_HEADERS} bytes"):
        box.apply(data)
    assert os.listdir(box.target) == []


def test_global_pax_headers_are_not_kept(box: Box) -> None:
    """tarfile keeps global headers for the rest of the archive; Docker ignores them, and so do we
    once the entry they precede is read."""
    head = tarfile.TarInfo.create_pax_global_header({"comment": "g" * 1000})
    data = head + make_tar(entry("a"), entry("b"))
    with layers._Walk(io.BytesIO(data), IMAGE, DIGEST) as walk:
        names = [(m.name, dict(walk.tar.pax_headers)) for m, _ in walk]
    assert names == [("a", {}), ("b", {})]


def pax_sparse(declared: int) -> bytes:
    """GNU tar's sparse format 1.0 (pax): a file of ``declared`` bytes, 512 of them stored."""
    pax = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "bomb",
           "GNU.sparse.realsize": str(declared)}
    data = f"1\n{declared - 512}\n512\n".encode().ljust(512, b"\0") + b"x" * 512  # the map, the data
    return make_tar(entry("GNUSparseFile.0/bomb", data=data, pax=pax))


def old_gnu_sparse(declared: int) -> bytes:
    """GNU tar's old sparse type 'S': the map and the real size in the header itself."""
    info = tarfile.TarInfo("bomb")
    info.type, info.size = tarfile.GNUTYPE_SPARSE, 512
    buf = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    buf[386:398] = tarfile.itn(declared - 512, 12, tarfile.GNU_FORMAT)  # type: ignore[attr-defined]
    buf[398:410] = tarfile.itn(512, 12, tarfile.GNU_FORMAT)  # type: ignore[attr-defined]
    buf[483:495] = tarfile.itn(declared, 12, tarfile.GNU_FORMAT)  # type: ignore[attr-defined]
    buf[148:156] = b" " * 8
    buf[148:155] = b"%06o\0" % tarfile.calc_chksums(bytes(buf))[0]  # type: ignore[attr-defined]
    return bytes(buf) + b"x" * 512 + b"\0" * 1024


@pytest.mark.parametrize("bomb", [pax_sparse, old_gnu_sparse])
def test_a_sparse_bomb_is_refused_at_its_declared_size(box: Box, bomb: Any) -> None:
    """1 TB declared, 512 bytes stored: unpacking would write a terabyte of zeros."""
    data = bomb(10 ** 12)
    with layers._Walk(io.BytesIO(bomb(4096)), IMAGE, DIGEST) as walk:  # the form is read as sparse
        assert [(m.name, m.size, m.issparse()) for m, _ in walk] == [("bomb", 4096, True)]
    with pytest.raises(SdctrError) as e:
        inspect_layer(io.BytesIO(data), image=IMAGE, digest=DIGEST)
    assert str(e.value) == (f"image {IMAGE}: layer {DIGEST}: entry 'bomb': its files declare more than "
                            f"{layers.MAX_SIZE} bytes in all (a sparse or compression bomb?)")
    with pytest.raises(SdctrError, match="declare more than"):
        box.apply(data)
    assert os.listdir(box.target) == []


def test_file_sizes_count_against_the_free_space(box: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    class Small:
        f_bavail, f_frsize = 2, 4096

    monkeypatch.setattr(layers.os, "fstatvfs", lambda fd: Small)
    with pytest.raises(SdctrError, match="more than the 8192 bytes free"):
        box.apply(make_tar(entry("a", data=b"a" * 5000), entry("b", data=b"b" * 5000)))
    box.apply(make_tar(entry("a", data=b"a" * 5000)))
