"""The overlay driver's own cases (its directories, its option string, the unit's poststop script),
the hooks over a container's record, and mountinfo; what every driver must do is
test_snapshotters.py's (the fixtures are conftest.py's)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from test_snapshotters import sh_in

from sdctr import state
from sdctr.image import store as images
from sdctr.image.store import Image
from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.runtime import hooks, lifecycle
from sdctr.spec import ContainerSpec
from sdctr.state import find_by_id
from sdctr.storage import snapshotter
from sdctr.storage.mountinfo import mounts_at, mounts_under, parse
from sdctr.storage.overlay import OverlaySnapshotter

pytestmark = pytest.mark.host

C1 = "a" * 64


def mounted(snap: OverlaySnapshotter, cid: str, image: Image, target: Path) -> None:
    snap.unpack(image)
    snap.prepare(cid, image.layers)
    snapshotter.activate(snap, cid, image.layers, target)


def test_a_container_writes_into_its_upper_layer_only(paths: Paths, tmp: Path, busybox: Image) -> None:
    snap = OverlaySnapshotter(paths)
    target = tmp / "run" / C1 / "rootfs"
    mounted(snap, C1, busybox, target)
    try:
        sh_in(target, "echo changed > /etc/motd; echo new > /tmp/new")
        layer = paths.root / "overlay/layers" / busybox.layers[0][7:]
        upper = paths.root / "overlay/containers" / C1 / "upper"
        assert (upper / "tmp/new").read_text() == "new\n"
        assert (upper / "etc/motd").read_text() == "changed\n"
        assert (layer / "etc/motd").read_text() == "from the image\n"
        assert not (layer / "tmp/new").exists()
        # overlayfs shows the upper directory's owner and mode as the container's "/"
        assert stat.S_IMODE(os.stat(target).st_mode) == stat.S_IMODE(os.stat(layer).st_mode)
    finally:
        snap.deactivate(C1, target)
    snap.remove(C1)
    assert list((paths.root / "overlay/containers").iterdir()) == []


def test_remove_never_deletes_through_a_mount_inside_the_snapshot(paths: Paths, tmp: Path,
                                                                   busybox: Image) -> None:
    snap = OverlaySnapshotter(paths)
    snap.unpack(busybox)
    snap.prepare(C1, busybox.layers)
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


def test_paths_that_would_break_the_option_string_are_refused(tmp: Path) -> None:
    paths = Paths.from_root(str(tmp / "a,b:c"))
    src = tmp / "src"
    (src / "etc").mkdir(parents=True)
    tarball = tmp / "t.tar"
    with tarfile.open(tarball, "w") as t:
        t.add(src, arcname=".")
    image = images.import_tarball(paths, str(tarball), "t")
    snap = OverlaySnapshotter(paths)
    snap.unpack(image)
    snap.prepare(C1, image.layers)
    with pytest.raises(SdctrError, match="commas, colons"):
        snapshotter.activate(snap, C1, image.layers, tmp / "rootfs")


def test_removing_the_image_deletes_its_unpacked_layers(paths: Paths, tmp: Path, busybox: Image) -> None:
    snap = OverlaySnapshotter(paths)
    mounted(snap, C1, busybox, tmp / "rootfs")
    snap.deactivate(C1, tmp / "rootfs")
    snap.remove(C1)
    assert images.remove(paths, "busybox")[-1] == f"Deleted: sha256:{busybox.id}"
    assert list((paths.root / "overlay/layers").iterdir()) == []


def test_a_killed_unpacks_directory_goes_at_the_next_unpack_and_prune(paths: Paths, busybox: Image) -> None:
    """An unpack killed (SIGKILL) leaves its .tmp- directory: the next unpack or prune deletes it
    once its writer's lock is free (the writer's own, live one stays), whatever its age."""
    import fcntl

    snap = OverlaySnapshotter(paths)
    snap.unpack(busybox)
    layers = paths.root / "overlay/layers"
    dead, live = layers / ".tmp-dead-x", layers / ".tmp-live-y"
    for d in (dead, live):
        (d / "etc").mkdir(parents=True)
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        snap.prune({busybox.layers[0]})
        assert sorted(p.name for p in layers.iterdir() if p.name.startswith(".")) == [".tmp-live-y"]
    finally:
        os.close(fd)
    (dead / "etc").mkdir(parents=True)
    import shutil

    shutil.rmtree(layers / busybox.layers[0][7:])  # so that it is unpacked again
    snap.unpack(busybox)
    assert sorted(p.name for p in layers.iterdir()) == [busybox.layers[0][7:]]


def _spec(image: Image, *, ephemeral: bool = False) -> ContainerSpec:
    return ContainerSpec(id=C1, name="c1", image="busybox", image_id=image.id, command=("true",),
                         ephemeral=ephemeral)


@pytest.mark.parametrize("ephemeral", [False, True])
def test_after_create_the_hooks_need_no_image_store(paths: Paths, busybox: Image, ephemeral: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The record names the driver and the layer chain: the unit's activation command, the hooks
    and `start` work with the image store gone."""
    spec = lifecycle.create(paths, _spec(busybox, ephemeral=ephemeral), busybox)
    assert find_by_id(paths, C1).storage == "overlay"
    assert find_by_id(paths, C1).layers == busybox.layers
    (paths.root / "images.json").rename(paths.root / "images.json.away")
    with pytest.raises(images.NoSuchImage):
        images.resolve(paths, busybox.id)
    rootfs = paths.rootfs(C1)
    command = lifecycle.prestart_command(paths, spec)
    if ephemeral:
        assert command is None  # the hook resets it first
        hooks.prestart(paths, C1)
    else:
        assert command is not None
        subprocess.run(command, check=True)
    try:
        sh_in(rootfs, "echo written > /etc/motd")
        monkeypatch.setenv("EXIT_CODE", "exited")
        monkeypatch.setenv("EXIT_STATUS", "0")
        hooks.poststop(paths, C1)
        assert mounts_at(rootfs) == []
        hooks.prestart(paths, C1)  # a restart
        assert sh_in(rootfs, "cat /etc/motd") == ("from the image\n" if ephemeral else "written\n")
    finally:
        hooks.remove_container(paths, spec)
    assert not paths.container_dir(C1).exists()


def test_a_record_from_before_the_chain_was_recorded_still_starts(paths: Paths, busybox: Image) -> None:
    """A record written by an earlier sdctr names neither driver nor layers: its image is resolved,
    and its snapshot is overlay's."""
    snap = OverlaySnapshotter(paths)
    snap.unpack(busybox)
    snap.prepare(C1, busybox.layers)
    old = {k: v for k, v in _spec(busybox).to_json().items() if k not in ("storage", "layers")}
    paths.container_dir(C1).mkdir(parents=True)
    (paths.container_dir(C1) / "config.json").write_text(json.dumps(old))
    spec = find_by_id(paths, C1)
    assert (spec.storage, spec.layers) == ("", ())
    command = lifecycle.prestart_command(paths, spec)
    assert command is not None
    try:
        subprocess.run(command, check=True)
        assert sh_in(paths.rootfs(C1), "cat /etc/motd") == "from the image\n"
    finally:
        hooks.remove_container(paths, spec)
    assert mounts_under(paths.root) == [] and not snap.container_dir(C1).exists()


def test_mountinfo_unescapes_what_the_kernel_escapes(tmp: Path) -> None:
    line = (r"36 35 98:0 / /tmp/a\040b\011c\134d rw,relatime - tmpfs my\040src rw,size=4k" "\n"
            "37 35 98:0 / /short rw - proc proc rw\n")
    [m, short] = parse(line)
    assert (str(m.target), m.fstype, m.source) == ("/tmp/a b\tc\\d", "tmpfs", "my src")
    assert m.options == "rw,size=4k"
    assert str(short.target) == "/short"
    odd = tmp / "with space"
    odd.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(odd)], check=True)
    try:
        assert [m.fstype for m in mounts_at(odd)] == ["tmpfs"]
    finally:
        subprocess.run(["umount", str(odd)], check=True)


@pytest.mark.parametrize("attached", [True, False])
def test_the_units_poststop_script_removes_a_clean_rm_container(paths: Paths, tmp: Path, busybox: Image,
                                                                attached: bool) -> None:
    spec = _rm_container(paths, busybox, attached)
    hook_ran = tmp / "hook-ran"
    r = _poststop(paths, spec, hook_ran, EXIT_CODE="exited", EXIT_STATUS="3", SERVICE_RESULT="exit-code")
    assert r.returncode == 0, r.stderr
    assert not hook_ran.exists()
    assert mounts_under(tmp) == []
    for gone in (OverlaySnapshotter(paths).container_dir(C1), paths.run_dir(C1), paths.container_dir(C1)):
        assert not gone.exists(), gone
    # what the waiting `sdctr run` reads, or a `wait` that comes after the record is gone
    assert json.loads(hooks.exit_file(paths, C1).read_text())["exit_code"] == 3


def test_the_units_poststop_script_removes_the_record_under_its_lock(paths: Paths, tmp: Path,
                                                                     busybox: Image) -> None:
    """status.json is read-modify-written under the record's lock (state.record_locked) by the
    init, the hook and `sdctr stop`; the script removed the record without it, so a writer could
    put a file back into a directory being removed (rm -rf then fails: a record without its
    config, or the hook's slow path). It must wait for the lock's holder, then remove it all."""
    spec = _rm_container(paths, busybox, attached=False)
    command = hooks.poststop_command(paths, spec)
    assert command is not None
    hook_ran = tmp / "hook-ran"
    env = {"PATH": os.environ["PATH"], "EXIT_CODE": "exited", "EXIT_STATUS": "0",
           "SERVICE_RESULT": "success"}
    try:
        with state.record_locked(paths, C1) as d:
            proc = subprocess.Popen([*command, "/bin/sh", "-c", f"echo hook > {hook_ran}"], env=env,
                                    stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 10
            while paths.run_dir(C1).exists() and time.monotonic() < deadline:  # up to the record
                time.sleep(0.02)
            time.sleep(0.5)
            assert proc.poll() is None, proc.communicate()  # waiting for us...
            assert (paths.container_dir(C1) / "config.json").exists()  # ...with the record whole
            # a status update the holder finishes: written whole, then removed with the rest
            state.write_json_atomic(paths.container_dir(C1) / "status.json", {"running": False},
                                    dir_fd=d)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert not hook_ran.exists()  # the fast path did it all
        assert not paths.container_dir(C1).exists()
        assert os.listdir(paths.containers) == []
        assert state.update_status(paths, C1, running=False) is None  # and no writer brings it back
    finally:
        hooks.remove_container(paths, spec)


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
    spec = lifecycle.create(paths, spec, image)
    command = lifecycle.prestart_command(paths, spec)
    assert command is not None
    subprocess.run(command, check=True)
    return spec


def _poststop(paths: Paths, spec: ContainerSpec, hook_ran: Path,
              **env: str) -> subprocess.CompletedProcess[str]:
    command = hooks.poststop_command(paths, spec)
    assert command is not None
    hook = ["/bin/sh", "-c", f"echo hook > {hook_ran}"]
    return subprocess.run([*command, *hook], env={"PATH": os.environ["PATH"], **env}, capture_output=True,
                          text=True)
