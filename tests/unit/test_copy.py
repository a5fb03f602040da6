"""`cp`'s path resolution and copying (sdctr.runtime.copy) against a hostile container root: every
symlink a container could plant points out of its root, and nothing may be read or written there.
Run twice: with openat2's RESOLVE_IN_ROOT, and with the walk used where the kernel lacks it."""

from __future__ import annotations

import errno
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdctr import linux
from sdctr.log import SdctrError
from sdctr.runtime import copy


@pytest.fixture(params=["openat2", "walk"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "walk":
        def enosys(*args: object, **kw: object) -> int:
            raise OSError(errno.ENOSYS, "openat2")
        monkeypatch.setattr(linux, "openat2", enosys)
    return str(request.param)


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[tuple[Path, Path, int]]:
    """(root, outside, root fd): a container root whose symlinks all lead to `outside`."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "tmp/victim").mkdir(parents=True)
    (root / "data").mkdir()
    outside.mkdir()
    (outside / "secret").write_text("host secret\n")
    (root / "tmp/victim/secret").write_text("container secret\n")
    (root / "abs").symlink_to(outside)  # absolute: out, if followed on the host
    (root / "data/up").symlink_to("../../../../../../../../" + str(outside).lstrip("/"))
    (root / "secret").symlink_to(outside / "secret")
    (root / "loop").symlink_to("loop")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield root, outside, fd
    os.close(fd)


def listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def test_paths_resolve_inside_the_root(resolver: str, hostile: tuple[Path, Path, int]) -> None:
    root, outside, fd = hostile
    os.makedirs(root / str(outside).lstrip("/"))  # where "/abs" leads when resolved in the root
    (root / str(outside).lstrip("/") / "secret").write_text("container's own\n")
    for path in ("/secret", "secret", "/abs/secret", "/data/up/secret", "/../../secret"):
        f = copy.open_in_root(fd, path, os.O_RDONLY)
        with os.fdopen(f) as r:
            assert r.read() == "container's own\n", path
    with pytest.raises(OSError) as e:
        copy.open_in_root(fd, "/loop", os.O_RDONLY)
    assert e.value.errno == errno.ELOOP


def test_copy_in_through_hostile_symlinks_stays_in_the_root(resolver: str, hostile: tuple[Path, Path, int],
                                                           tmp_path: Path) -> None:
    root, outside, fd = hostile
    src = tmp_path / "src.txt"
    src.write_text("payload\n")
    before = listing(outside)
    for dest in ("/abs/pwned", "/data/up/pwned"):
        parent, name = copy.split_path(dest)
        try:
            pfd = copy.open_in_root(fd, parent, os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            continue  # the symlink leads nowhere inside: refused, which is as good
        try:
            copy.copy(os.open(tmp_path, os.O_PATH | os.O_DIRECTORY), "src.txt", pfd, name, dest, owner=False)
        finally:
            os.close(pfd)
    assert listing(outside) == before, "cp wrote outside the container's root"
    # a destination that is itself a symlink out is replaced, not written through
    pfd = copy.open_in_root(fd, "/", os.O_PATH | os.O_DIRECTORY)
    copy.copy(os.open(tmp_path, os.O_PATH | os.O_DIRECTORY), "src.txt", pfd, "secret", "/secret", owner=False)
    os.close(pfd)
    assert (outside / "secret").read_text() == "host secret\n"
    assert (root / "secret").read_text() == "payload\n" and not (root / "secret").is_symlink()


def test_copy_out_copies_symlinks_as_symlinks(resolver: str, hostile: tuple[Path, Path, int],
                                              tmp_path: Path) -> None:
    _, _, fd = hostile
    dest = tmp_path / "out"
    dest.mkdir()
    dfd = os.open(dest, os.O_PATH | os.O_DIRECTORY)
    copy.copy(fd, ".", dfd, ".", str(dest), owner=False)
    os.close(dfd)
    assert (dest / "secret").is_symlink() and (dest / "abs").is_symlink()
    assert not (dest / "abs").resolve().is_relative_to(dest)  # a link, as it was, not what it names
    assert (dest / "tmp/victim/secret").read_text() == "container secret\n"
    copied = [p for p in dest.rglob("*") if p.is_file() and not p.is_symlink()]
    assert "host secret" not in "".join(p.read_text() for p in copied)


def test_a_tar_stream_cannot_write_through_its_own_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tar.addfile(link)
        evil = tarfile.TarInfo("link/pwned")
        evil.size = 5
        tar.addfile(evil, io.BytesIO(b"pwned"))
    data.seek(0)
    dfd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises((OSError, SdctrError)):
            copy.extract_tar(data, dfd, owner=False)
    finally:
        os.close(dfd)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(("path", "split"), [("a/b/c", ("a/b", "c")), ("a/b/c/", ("a/b", "c")),
                                             ("/c", ("/", "c")), ("c", (".", "c")), ("a/.", ("a/", ".")),
                                             ("/", ("/", ".")), ("/.", ("/", "."))])
def test_split_path(path: str, split: tuple[str, str]) -> None:
    assert copy.split_path(path) == split
