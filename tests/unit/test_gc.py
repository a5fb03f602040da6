"""The image store's references and garbage: an image a record uses cannot disappear (`rmi`
refuses, `rmi -f` untags and keeps), a record is never made on an image `rmi` removed meanwhile,
a killed writer's temporaries go at the next command, and `image prune` reclaims every blob and
unpacked layer no image references."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sdctr.image import store as images
from sdctr.main import main
from sdctr.paths import Paths
from sdctr.runtime import hooks, lifecycle
from sdctr.spec import ContainerSpec
from tests.helpers.store import rootfs_tar

pytestmark = pytest.mark.unit


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths.from_root(str(tmp_path / "root"))


def sdctr(paths: Paths, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["--root", str(paths.root), *argv])
    out, err = capsys.readouterr()
    return status, out, err


def imported(paths: Paths, tmp_path: Path, ref: str, marker: str = "hello") -> images.Image:
    tarball, _ = rootfs_tar(tmp_path, marker)
    return images.import_tarball(paths, str(tarball), ref, changes=images.parse_changes(['CMD ["sh"]']))


def created(paths: Paths, image: images.Image, name: str) -> ContainerSpec:
    spec = ContainerSpec(id=lifecycle.new_id(), name=name, image=image.name, image_id=image.id,
                         command=("sh",))
    return lifecycle.create(paths, spec, image)


def test_rmi_refuses_an_image_a_created_container_uses(paths: Paths, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    image = imported(paths, tmp_path, "app")
    created(paths, image, "user")
    status, _, err = sdctr(paths, capsys, "rmi", "app")
    assert status != 0 and "used by container(s) user" in err
    assert [i.id for i in images.list_images(paths)] == [image.id]


def test_rmi_force_untags_and_keeps_the_image_while_a_container_uses_it(
        paths: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = imported(paths, tmp_path, "app")
    user = created(paths, image, "user")
    status, out, _ = sdctr(paths, capsys, "rmi", "-f", "app")
    assert (status, out) == (0, "Untagged: app:latest\n")
    kept = images.resolve(paths, image.id)  # as <none>:<none>, still whole
    assert kept.repo_tags == () and all(paths.blob(b).exists() for b in kept.layer_blobs)
    assert sdctr(paths, capsys, "image", "prune", "-f")[0] == 0  # in use: not dangling garbage
    assert images.resolve(paths, image.id).id == image.id
    hooks.remove_container(paths, user)  # what `rm` does once its unit is gone
    sdctr(paths, capsys, "image", "prune", "-f")
    assert images.list_images(paths) == []


def test_no_record_is_made_on_an_image_rmi_removed_meanwhile(paths: Paths, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from sdctr.storage.overlay import OverlaySnapshotter

    image = imported(paths, tmp_path, "app")
    unpack = OverlaySnapshotter.unpack

    def unpack_then_rmi(self: OverlaySnapshotter, image: images.Image) -> dict[str, int]:
        sizes = unpack(self, image)
        assert sdctr(paths, capsys, "rmi", "app")[0] == 0  # another shell, at the worst moment
        return sizes

    monkeypatch.setattr(OverlaySnapshotter, "unpack", unpack_then_rmi)
    with pytest.raises(images.NoSuchImage):
        created(paths, image, "late")
    assert sdctr(paths, capsys, "ps", "-a", "-q")[1] == ""


WRITER = """
import sys, time
from sdctr.image import store
from sdctr.paths import Paths

def chunks():
    yield b"x" * 65536
    print("writing", flush=True)
    time.sleep(60)

store.write_blob(Paths.from_root(sys.argv[1]), chunks())
"""


def test_a_killed_writers_temp_goes_at_the_next_command_and_a_live_ones_stays(
        paths: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    imported(paths, tmp_path, "app")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(paths.root)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
        temps = list((paths.root / "blobs/sha256").glob(".tmp-*"))
        assert len(temps) == 1
        assert sdctr(paths, capsys, "images")[0] == 0
        assert temps[0].exists()  # its writer is alive: the temp is its
        writer.kill()
        writer.wait()
        assert sdctr(paths, capsys, "images")[0] == 0
        assert list((paths.root / "blobs/sha256").glob(".tmp-*")) == []
    finally:
        writer.kill()
        writer.wait()


def test_prune_reclaims_blobs_and_layers_no_image_references(paths: Paths, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    image = imported(paths, tmp_path, "app")
    created(paths, image, "user")  # its layers unpacked
    kept = {p.name for p in (paths.root / "blobs/sha256").iterdir()}
    # a pull killed after its blobs were stored, before its image was made
    subprocess.run([sys.executable, "-c", "import sys; from sdctr.image import store; "
                    "from sdctr.paths import Paths; store.write_blob(Paths.from_root(sys.argv[1]), "
                    "[b'orphan' * 1000])", str(paths.root)], check=True)
    assert len(list((paths.root / "blobs/sha256").iterdir())) == len(kept) + 1
    status, out, _ = sdctr(paths, capsys, "image", "prune", "-f")
    assert status == 0 and "Total reclaimed space: 6kB" in out, out
    assert {p.name for p in (paths.root / "blobs/sha256").iterdir()} == kept
    assert images.resolve(paths, "app").id == image.id


def test_prune_leaves_the_blobs_of_a_running_pull_alone(paths: Paths, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    imported(paths, tmp_path, "app")
    blobs = set((paths.root / "blobs/sha256").iterdir())
    digest, _ = images.write_blob(paths, [b"in flight"])  # this process now holds the lease ...
    # ... and another one prunes
    subprocess.run([sys.executable, "-m", "sdctr", "--root", str(paths.root), "image", "prune", "-f"],
                   check=True, capture_output=True)
    assert paths.blob(digest).exists() and blobs < set((paths.root / "blobs/sha256").iterdir())


class _Sd:
    """systemd as `system check` asks it: one unit left with no record."""

    def __init__(self, units: dict[str, str]):
        self.units = units

    def active_states(self) -> dict[str, str]:
        return dict(self.units)

    def kill(self, unit: str, signum: int, who: str = "main") -> None:
        pass

    def stop(self, unit: str) -> None:
        pass

    def reset_failed(self, unit: str) -> None:
        pass

    def remove_unit_file(self, unit: str) -> None:
        self.units.pop(unit, None)


def test_system_check_reports_each_inconsistency_and_repair_leaves_none(paths: Paths, tmp_path: Path) -> None:
    from sdctr.cli import system
    from sdctr.storage import drivers

    image = imported(paths, tmp_path, "app")
    user = created(paths, image, "user")
    snap = drivers.driver("overlay", paths)
    snapshot = snap.snapshot_dir(user.id)
    assert snapshot is not None
    shutil.rmtree(snapshot)  # a record without its snapshot
    stray = "a" * 64
    snap.prepare(stray, user.layers)  # a snapshot without a record
    (paths.root / "blobs/sha256/.tmp-dead").write_bytes(b"x")  # a killed writer's, unlocked
    orphan, _ = images.write_blob(paths, [b"orphan"])
    images._end_write_lease(paths)  # as if this writer exited
    sd = _Sd({f"ctr-{'b' * 64}.service": "failed"})
    found = [p.what for p in system.inconsistencies(paths, sd)]
    assert len(found) == 5, found
    assert any("user" in f and "snapshot is missing" in f for f in found)
    assert any(f"snapshot {stray[:12]} has no record" in f for f in found)
    assert any(".tmp-dead" in f for f in found) and any("no image references" in f for f in found)
    assert any("has no record" in f and "ctr-bbb" in f for f in found)
    for p in system.inconsistencies(paths, sd):
        assert p.repair is not None
        p.repair()
    assert [p.what for p in system.inconsistencies(paths, sd)] == []
    assert snapshot.is_dir() and not paths.blob(orphan).exists()
    assert images.resolve(paths, "app").id == image.id  # nothing a user made was lost
