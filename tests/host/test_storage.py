"""The overlay snapshotter for real: a busybox image mounted per container, writes landing in the
container's upper layer, whiteouts honoured, and nothing left mounted after any test."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.rootfs import build_busybox_rootfs, require_busybox

from sdctr.image import store as images
from sdctr.image.store import Image
from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.runtime import hooks
from sdctr.spec import ContainerSpec
from sdctr.state import save_spec
from sdctr.storage.overlay import OverlaySnapshotter, driver, mounts_under

pytestmark = pytest.mark.host

C1, C2 = "a" * 64, "b" * 64


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


def sh_in(root: Path, script: str) -> str:
    r = subprocess.run(["chroot", str(root), "/bin/sh", "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_container_writes_into_its_upper_layer_only(paths: Paths, tmp: Path, busybox: Image) -> None:
    snap = driver(paths)
    snap.ensure_layers(busybox)
    snap.prepare(C1, busybox)
    target = tmp / "run" / C1 / "rootfs"
    snap.mount(C1, busybox, target)
    try:
        assert sh_in(target, "cat /etc/motd; echo changed > /etc/motd; echo new > /tmp/new; ls /bin") \
            .startswith("from the image\n")
        layer = paths.root / "overlay/layers" / busybox.layers[0][7:]
        upper = paths.root / "overlay/containers" / C1 / "upper"
        assert (upper / "tmp/new").read_text() == "new\n"
        assert (upper / "etc/motd").read_text() == "changed\n"
        assert (layer / "etc/motd").read_text() == "from the image\n"
        assert not (layer / "tmp/new").exists()
        assert stat.S_IMODE(os.stat(target).st_mode) == stat.S_IMODE(os.stat(layer).st_mode)

        target2 = tmp / "run" / C2 / "rootfs"
        snap.mount(C2, busybox, target2)  # mount prepares by itself
        try:
            assert sh_in(target2, "cat /etc/motd; ls /tmp") == "from the image\n"
        finally:
            snap.unmount(target2)
    finally:
        snap.unmount(target)
    snap.remove(C1)
    snap.remove(C2)
    assert list((paths.root / "overlay/containers").iterdir()) == []


def test_mount_and_unmount_are_idempotent(paths: Paths, tmp: Path, busybox: Image) -> None:
    snap = driver(paths)
    target = tmp / "rootfs"
    try:
        snap.mount(C1, busybox, target)
        snap.mount(C1, busybox, target)
        assert len(mounts_under(target)) == 1
    finally:
        snap.unmount(target)
    snap.unmount(target)
    snap.unmount(tmp / "never-mounted")
    assert mounts_under(tmp) == []


def test_the_units_mount_command_mounts_the_same_snapshot_once(paths: Paths, tmp: Path,
                                                               busybox: Image) -> None:
    snap = driver(paths)
    snap.ensure_layers(busybox)  # what `sdctr create` does before any unit exists
    snap.prepare(C1, busybox)
    target = tmp / "unit-rootfs"
    cmd = snap.mount_command(C1, busybox, target)
    try:
        for _ in range(2):  # systemctl restart after a crash runs it over an existing mount
            subprocess.run(cmd, check=True)
        assert len(mounts_under(target)) == 1
        assert sh_in(target, "echo written > /new; cat /new") == "written\n"
        assert (snap.container_dir(C1) / "upper/new").exists()
    finally:
        snap.unmount(target)
    assert mounts_under(tmp) == []


def test_remove_and_reset_refuse_while_mounted(paths: Paths, tmp: Path, busybox: Image) -> None:
    snap = driver(paths)
    target = tmp / "rootfs"
    snap.mount(C1, busybox, target)
    try:
        (target / "etc/extra").write_text("x")
        with pytest.raises(SdctrError, match="still mounted at"):
            snap.remove(C1)
        with pytest.raises(SdctrError, match="still mounted at"):
            snap.reset(C1)
        assert (target / "etc/extra").exists()
    finally:
        snap.unmount(target)
    snap.reset(C1)
    snap.mount(C1, busybox, target)
    try:
        assert not (target / "etc/extra").exists()
        assert (target / "etc/motd").read_text() == "from the image\n"
    finally:
        snap.unmount(target)
    snap.remove(C1)
    snap.remove(C1)


def test_remove_never_deletes_through_a_mount_inside_the_snapshot(paths: Paths, tmp: Path,
                                                                   busybox: Image) -> None:
    snap = driver(paths)
    snap.prepare(C1, busybox)
    precious = tmp / "precious"
    precious.mkdir()
    (precious / "data").write_text("keep me\n")
    inside = paths.root / "overlay/containers" / C1 / "upper/mnt"
    inside.mkdir()
    subprocess.run(["mount", "--bind", str(precious), str(inside)], check=True)
    try:
        with pytest.raises(SdctrError, match="is mounted inside it"):
            snap.remove(C1)
    finally:
        subprocess.run(["umount", str(inside)], check=True)
    assert (precious / "data").read_text() == "keep me\n"
    snap.remove(C1)
    assert (precious / "data").exists()


def test_mount_refuses_a_foreign_mount_at_the_target(paths: Paths, tmp: Path, busybox: Image) -> None:
    target = tmp / "rootfs"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(target)], check=True)
    try:
        with pytest.raises(SdctrError, match="already has a tmpfs mount"):
            driver(paths).mount(C1, busybox, target)
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_paths_that_would_break_the_option_string_are_refused(tmp: Path) -> None:
    paths = Paths.from_root(str(tmp / "a,b:c"))
    src = tmp / "src"
    (src / "etc").mkdir(parents=True)
    tarball = tmp / "t.tar"
    with tarfile.open(tarball, "w") as t:
        t.add(src, arcname=".")
    image = images.import_tarball(paths, str(tarball), "t")
    with pytest.raises(SdctrError, match="commas, colons"):
        driver(paths).mount(C1, image, tmp / "rootfs")


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


def test_whiteouts_hide_lower_files_through_a_real_overlay(paths: Paths, tmp: Path) -> None:
    one = layer_tar(("etc", None), ("etc/hello", b"1\n"), ("etc/keep", b"1\n"),
                    ("var", None), ("var/a", b"1\n"), ("var/b", b"1\n"))
    two = layer_tar(("etc", None), ("etc/.wh.hello", b""), ("var", None), ("var/.wh..wh..opq", b""),
                    ("var/c", b"2\n"), ("etc/added", b"2\n"))
    blobs = [images.write_blob_bytes(paths, one), images.write_blob_bytes(paths, two)]
    image = images.create_image(paths, blobs, "two-layers")
    assert len(image.layers) == 2
    snap = OverlaySnapshotter(paths)
    target = tmp / "rootfs"
    snap.mount(C1, image, target)
    try:
        assert sorted(os.listdir(target / "etc")) == ["added", "keep"]
        assert sorted(os.listdir(target / "var")) == ["c"]
        (target / "var/a").write_text("recreated\n")  # over a whiteout-hidden name: lands in upper
        assert (paths.root / "overlay/containers" / C1 / "upper/var/a").read_text() == "recreated\n"
        os.unlink(target / "etc/keep")  # deleting a lower file makes an upper whiteout
        assert not (target / "etc/keep").exists()
        assert (snap.layer_dir(image.layers[0]) / "etc/keep").exists()
    finally:
        snap.unmount(target)
    snap.remove(C1)
    assert images.remove(paths, "two-layers")[-1] == f"Deleted: sha256:{image.id}"
    assert list((paths.root / "overlay/layers").iterdir()) == []


@pytest.mark.parametrize("attached", [True, False])
def test_the_units_poststop_script_removes_a_clean_rm_container(paths: Paths, tmp: Path, busybox: Image,
                                                                attached: bool) -> None:
    spec = _rm_container(paths, busybox, attached)
    hook_ran = tmp / "hook-ran"
    r = _poststop(paths, spec, hook_ran, EXIT_CODE="exited", EXIT_STATUS="3", SERVICE_RESULT="exit-code")
    assert r.returncode == 0, r.stderr
    assert not hook_ran.exists()
    assert mounts_under(tmp) == []
    for gone in (driver(paths).container_dir(C1), paths.run_dir(C1), paths.container_dir(C1)):
        assert not gone.exists(), gone
    exit_file = hooks.exit_file(paths, C1)
    if attached:  # what the waiting `sdctr run` reads
        assert json.loads(exit_file.read_text())["exit_code"] == 3
    else:
        assert not exit_file.exists()


@pytest.mark.parametrize("env", [
    {"EXIT_CODE": "killed", "EXIT_STATUS": "KILL", "SERVICE_RESULT": "signal"},
    {"EXIT_CODE": "exited", "EXIT_STATUS": "0", "SERVICE_RESULT": "oom-kill"},
    {"SERVICE_RESULT": "exit-code"},  # ExecStartPre failed: no main process ever ran
])
def test_the_units_poststop_script_hands_the_rest_to_the_hook(paths: Paths, tmp: Path, busybox: Image,
                                                              env: dict[str, str]) -> None:
    spec = _rm_container(paths, busybox, attached=True)
    hook_ran = tmp / "hook-ran"
    try:
        assert _poststop(paths, spec, hook_ran, **env).returncode == 0
        assert hook_ran.read_text() == "hook\n"
        assert len(mounts_under(paths.rootfs(C1))) == 1  # untouched: the hook's to do
        assert paths.container_dir(C1).exists()
    finally:
        hooks.remove_container(paths, spec)


def _rm_container(paths: Paths, image: Image, attached: bool) -> ContainerSpec:
    spec = ContainerSpec(id=C1, name="rm-me", image="busybox", image_id=image.id, command=("true",),
                         attached=attached, remove=True)
    save_spec(paths, spec)
    snap = driver(paths)
    snap.ensure_layers(image)
    snap.prepare(C1, image)
    subprocess.run(snap.mount_command(C1, image, paths.rootfs(C1)), check=True)
    return spec


def _poststop(paths: Paths, spec: ContainerSpec, hook_ran: Path,
              **env: str) -> subprocess.CompletedProcess[str]:
    command = hooks.poststop_command(paths, spec)
    assert command is not None
    hook = ["/bin/sh", "-c", f"echo hook > {hook_ran}"]
    return subprocess.run([*command, *hook], env={"PATH": os.environ["PATH"], **env}, capture_output=True,
                          text=True)
