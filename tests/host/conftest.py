"""Fixtures of the host tier's storage suites (test_snapshotters.py, test_storage.py)."""

from __future__ import annotations

import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.rootfs import build_busybox_rootfs, require_busybox

from sdctr.image import store as images
from sdctr.image.store import Image
from sdctr.paths import Paths
from sdctr.storage.mountinfo import mounts_under


@pytest.fixture
def tmp(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, proven free of mounts after the test; anything left is unmounted, then reported."""
    yield tmp_path
    left = mounts_under(tmp_path)
    for m in reversed(left):
        subprocess.run(["umount", str(m.target)], check=False)
    assert not left, f"left mounted: {[str(m.target) for m in left]}"


@pytest.fixture
def paths(tmp: Path) -> Paths:
    return Paths.from_root(str(tmp / "root"))


@pytest.fixture(scope="module")
def busybox_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox root file system with an /etc/motd, as `tar -C dir -czf busybox.tar.gz .`."""
    require_busybox()
    work = tmp_path_factory.mktemp("busybox")
    src = build_busybox_rootfs(work / "busybox-src")
    (src / "etc/motd").write_text("from the image\n")
    tarball = work / "busybox.tar.gz"
    with tarfile.open(tarball, "w:gz") as t:
        t.add(src, arcname=".")
    return tarball


@pytest.fixture
def busybox(paths: Paths, busybox_tarball: Path) -> Image:
    """The image, imported into the test's own store."""
    return images.import_tarball(paths, str(busybox_tarball), "busybox")
