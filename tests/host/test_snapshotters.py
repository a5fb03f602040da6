"""One suite every storage driver passes (containerd's snapshots/testsuite habit): the same cases,
through the Snapshotter interface only, observed as a user would, through the mounted root.
Overlay runs here in the host tier; the thin-pool driver joins in the VM tier, where dm-thin is.

Driver-specific cases (overlay's directories, its option string, the unit's poststop script)
live in test_storage.py; the fixtures (tmp, paths, busybox) are conftest.py's."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sdctr import thinhost
from sdctr.image import store as images
from sdctr.image.store import Image
from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.storage import drivers, snapshotter
from sdctr.storage.mountinfo import mounts_at, mounts_under

pytestmark = pytest.mark.host

C1, C2 = "a" * 64, "b" * 64

if TYPE_CHECKING:
    from sdctr.storage.snapshotter import Snapshotter


@pytest.fixture(params=drivers.DRIVERS)
def snap(request: pytest.FixtureRequest, paths: Paths) -> Iterator[Snapshotter]:
    """Each driver this kernel has: devicemapper where dm-thin is (the VM tier runs this suite
    there, tests/vm/test_thin.py); its pool and loop devices are taken down afterwards."""
    if request.param == "devicemapper" and not thinhost.usable()[0]:
        pytest.skip("no dm-thin in this kernel: tests/vm/test_thin.py runs this driver in the VM tier")
    snap = drivers.driver(request.param, paths)
    yield snap
    down = getattr(snap, "down", None)
    if down is not None:
        down()


def sh_in(root: Path, script: str) -> str:
    r = subprocess.run(["chroot", str(root), "/bin/sh", "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def layer_tar(*entries: tuple[str, bytes | None]) -> bytes:
    """(name, content) entries; None content makes a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def up(snap: Snapshotter, cid: str, image: Image, target: Path) -> None:
    """What create and then the unit do: unpack, prepare, the activation command."""
    snap.unpack(image)
    snap.prepare(cid, image.layers)
    subprocess.run(snap.activate_command(cid, image.layers, target), check=True)


def test_each_container_writes_into_its_own_snapshot(snap: Snapshotter, tmp: Path, busybox: Image) -> None:
    one, two = tmp / "run" / C1 / "rootfs", tmp / "run" / C2 / "rootfs"
    up(snap, C1, busybox, one)
    try:
        assert sh_in(one, "cat /etc/motd; echo changed > /etc/motd; echo new > /tmp/new") \
            == "from the image\n"
        up(snap, C2, busybox, two)
        try:
            assert sh_in(two, "cat /etc/motd; ls /tmp") == "from the image\n"
        finally:
            snap.deactivate(C2, two)
        snap.deactivate(C1, one)
        up(snap, C1, busybox, one)  # what it wrote outlives a stop
        assert sh_in(one, "cat /etc/motd /tmp/new") == "changed\nnew\n"
    finally:
        snap.deactivate(C1, one)
    snap.remove(C1)
    snap.remove(C2)


def test_unpack_is_idempotent(snap: Snapshotter, busybox: Image) -> None:
    sizes = snap.unpack(busybox)
    assert list(sizes) == list(busybox.layer_blobs) and all(n > 0 for n in sizes.values())
    assert snap.unpack(busybox) == {}


def test_the_activation_command_mounts_once_however_often_it_runs(snap: Snapshotter, tmp: Path,
                                                                  busybox: Image) -> None:
    target = tmp / "unit-rootfs"
    up(snap, C1, busybox, target)
    try:
        # systemctl restart after a crash runs it over an existing mount
        subprocess.run(snap.activate_command(C1, busybox.layers, target), check=True)
        snapshotter.activate(snap, C1, busybox.layers, target)  # the hook's way: the same
        assert len(mounts_at(target)) == 1
        assert sh_in(target, "echo written > /new; cat /new") == "written\n"
    finally:
        snap.deactivate(C1, target)
    snap.deactivate(C1, target)
    snap.deactivate(C1, tmp / "never-mounted")
    assert mounts_under(tmp) == []


def test_activation_refuses_a_foreign_mount_at_the_target(snap: Snapshotter, tmp: Path,
                                                          busybox: Image) -> None:
    snap.unpack(busybox)
    snap.prepare(C1, busybox.layers)
    target = tmp / "rootfs"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(target)], check=True)
    try:
        with pytest.raises(SdctrError, match="already has a tmpfs mount"):
            snapshotter.activate(snap, C1, busybox.layers, target)
        assert len(mounts_at(target)) == 1
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_remove_and_reset_refuse_while_active_and_reset_empties_it(snap: Snapshotter, tmp: Path,
                                                                  busybox: Image) -> None:
    target = tmp / "rootfs"
    up(snap, C1, busybox, target)
    try:
        sh_in(target, "echo x > /etc/extra; rm /etc/motd")
        with pytest.raises(SdctrError, match="still mounted at"):
            snap.remove(C1)
        with pytest.raises(SdctrError, match="still mounted at"):
            snap.reset(C1)
        assert sh_in(target, "cat /etc/extra") == "x\n"
    finally:
        snap.deactivate(C1, target)
    snap.reset(C1)
    up(snap, C1, busybox, target)
    try:
        assert sh_in(target, "ls /etc/extra 2>/dev/null; cat /etc/motd") == "from the image\n"
    finally:
        snap.deactivate(C1, target)
    snap.remove(C1)
    snap.remove(C1)


def test_a_removed_snapshot_is_gone_and_a_new_one_starts_from_the_image(snap: Snapshotter, tmp: Path,
                                                                        busybox: Image) -> None:
    target = tmp / "rootfs"
    up(snap, C1, busybox, target)
    try:
        sh_in(target, "echo old > /etc/motd")
    finally:
        snap.deactivate(C1, target)
    snap.remove(C1)
    snapshot = snap.snapshot_dir(C1)
    assert snapshot is None or not snapshot.exists()
    up(snap, C1, busybox, target)
    try:
        assert sh_in(target, "cat /etc/motd") == "from the image\n"
    finally:
        snap.deactivate(C1, target)
    snap.remove(C1)


def test_the_view_is_read_only_and_shows_what_the_container_did(snap: Snapshotter, tmp: Path,
                                                                 busybox: Image) -> None:
    rootfs, view = tmp / "rootfs", tmp / "view"
    up(snap, C1, busybox, rootfs)
    try:
        sh_in(rootfs, "echo mine > /root/new; rm /etc/motd")
    finally:
        snap.deactivate(C1, rootfs)
    snapshotter.mount(snap.view(C1, busybox.layers, view))
    try:
        assert (view / "root/new").read_text() == "mine\n"
        assert not (view / "etc/motd").exists() and (view / "bin/busybox").exists()
        with pytest.raises(OSError) as e:
            (view / "root/more").write_text("no\n")
        assert e.value.errno == errno.EROFS
        with pytest.raises(SdctrError, match="still mounted at"):  # export holds it
            snap.remove(C1)
    finally:
        snapshotter.unmount(view)
    assert mounts_under(tmp) == []
    snap.remove(C1)


def test_prune_keeps_what_is_kept_or_active(snap: Snapshotter, tmp: Path, busybox: Image) -> None:
    target = tmp / "rootfs"
    up(snap, C1, busybox, target)
    try:
        assert snap.prune(keep=set(busybox.layers)) == []
        assert snap.prune(keep=set()) == []  # active: its layers stay
        assert sh_in(target, "cat /etc/motd") == "from the image\n"
    finally:
        snap.deactivate(C1, target)
    snap.remove(C1)
    assert snap.prune(keep=set()) == list(busybox.layers)
    assert snap.prune(keep=set()) == []
    assert snap.unpack(busybox)  # unpacked again: they were gone


def test_whiteouts_of_upper_layers_hide_lower_files(snap: Snapshotter, paths: Paths, tmp: Path) -> None:
    one = layer_tar(("etc", None), ("etc/hello", b"1\n"), ("etc/keep", b"1\n"),
                    ("var", None), ("var/a", b"1\n"), ("var/b", b"1\n"))
    two = layer_tar(("etc", None), ("etc/.wh.hello", b""), ("var", None), ("var/.wh..wh..opq", b""),
                    ("var/c", b"2\n"), ("etc/added", b"2\n"))
    blobs = [images.write_blob_bytes(paths, one), images.write_blob_bytes(paths, two)]
    image = images.create_image(paths, blobs, "two-layers")
    assert len(image.layers) == 2
    target = tmp / "rootfs"
    up(snap, C1, image, target)
    try:
        assert sorted(os.listdir(target / "etc")) == ["added", "keep"]
        assert sorted(os.listdir(target / "var")) == ["c"]
        (target / "var/a").write_text("recreated\n")  # over a name a whiteout hid
        os.unlink(target / "etc/keep")
    finally:
        snap.deactivate(C1, target)
    up(snap, C1, image, target)
    try:
        assert (target / "var/a").read_text() == "recreated\n"
        assert sorted(os.listdir(target / "etc")) == ["added"]
    finally:
        snap.deactivate(C1, target)
    up(snap, C2, image, target)  # the image's layers were not touched
    try:
        assert sorted(os.listdir(target / "etc")) == ["added", "keep"]
    finally:
        snap.deactivate(C2, target)
    snap.remove(C1)
    snap.remove(C2)


def test_an_unknown_driver_is_named(paths: Paths) -> None:
    with pytest.raises(SdctrError, match="unknown storage driver 'zfs'"):
        drivers.driver("zfs", paths)
