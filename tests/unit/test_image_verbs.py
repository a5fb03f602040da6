"""The image verbs a Docker user reaches for after `images`: tag, history, inspect, image prune."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from helpers.store import blob_files, rootfs_tar

from sdctr.cli.output import human_ago
from sdctr.image import store as images
from sdctr.main import main
from sdctr.paths import Paths


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


def sdctr(root: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["--root", str(root), *argv])
    out, err = capsys.readouterr()
    return status, out, err


def imported(root: Path, tmp_path: Path, ref: str, marker: str = "hello") -> images.Image:
    tarball, _ = rootfs_tar(tmp_path, marker)
    return images.import_tarball(Paths.from_root(str(root)), str(tarball), ref,
                                 changes=images.parse_changes(['CMD ["sh"]']))


def test_tag_gives_a_second_name(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = imported(root, tmp_path, "busybox")
    assert sdctr(root, capsys, "tag", "busybox", "registry.example.com/team/box:v2")[0] == 0
    status, out, _ = sdctr(root, capsys, "image", "ls")
    assert status == 0
    rows = [line.split()[:3] for line in out.splitlines()[1:]]
    assert ["busybox", "latest", image.short_id] in rows
    assert ["registry.example.com/team/box", "v2", image.short_id] in rows
    status, _, err = sdctr(root, capsys, "tag", "busybox", "Bad Name")
    assert status == 125 and "Bad Name" in err


def test_history_lists_the_steps_newest_first(root: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    image = imported(root, tmp_path, "busybox")
    status, out, _ = sdctr(root, capsys, "history", "busybox")
    assert status == 0
    header, first = out.splitlines()[:2]
    assert header.split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert first.startswith(image.short_id)
    assert "sdctr import" in first and "Less than a second ago" in first
    assert "19B" in first  # "#!fake shell\n" + "hello\n": the unpacked size of the one layer
    [step] = images.history(Paths.from_root(str(root)), image)
    assert step.layer == image.layer_blobs[0] and step.size == image.size


def test_inspect_falls_back_to_images(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = imported(root, tmp_path, "busybox")
    status, out, _ = sdctr(root, capsys, "inspect", "busybox")
    assert status == 0
    [doc] = json.loads(out)
    assert doc["Id"] == f"sha256:{image.id}"
    assert doc["RepoTags"] == ["busybox:latest"]
    assert doc["Config"]["Cmd"] == ["sh"]
    assert doc["RootFS"]["Layers"] == list(image.layers)
    status, out, _ = sdctr(root, capsys, "image", "inspect", "-f", "{{.Config.Cmd}}", image.short_id)
    assert (status, out) == (0, "[sh]\n")
    status, _, err = sdctr(root, capsys, "inspect", "--type", "container", "busybox")
    assert status == 1 and "no such container: busybox" in err  # Docker's 1 (test_cli_input.py)
    status, out, err = sdctr(root, capsys, "inspect", "nothing")
    assert status == 1 and "no such object: nothing" in err
    assert json.loads(out) == []  # as `docker inspect` prints
    # what is found is shown, and each that is not named, as Docker
    status, out, err = sdctr(root, capsys, "inspect", "-f", "{{.RepoTags}}", "nothing", "busybox", "nor")
    assert (status, out) == (1, "[busybox:latest]\n")
    assert [line for line in err.splitlines() if "no such object" in line] == [
        "sdctr: error: no such object: nothing", "sdctr: error: no such object: nor"], err


def test_prune_removes_dangling_then_unused(root: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    paths = Paths.from_root(str(root))
    old = imported(root, tmp_path, "busybox", "old")
    new = imported(root, tmp_path, "busybox", "new")  # the tag moves: `old` is dangling now
    used = imported(root, tmp_path, "other", "used")
    assert {i.id for i in images.list_images(paths)} == {old.id, new.id, used.id}

    status, out, _ = sdctr(root, capsys, "image", "prune", "-f")
    assert status == 0
    assert f"deleted: sha256:{old.id}" in out
    assert "Total reclaimed space: " in out and "Total reclaimed space: 0B" not in out
    assert {i.id for i in images.list_images(paths)} == {new.id, used.id}
    assert old.layer_blobs[0][7:] not in blob_files(paths.root)

    lines, freed = images.prune(paths, {used.id}, unused_too=True)  # a container uses `used`
    assert lines == ["Untagged: busybox:latest", f"Deleted: sha256:{new.id}"] and freed > 0
    assert [i.id for i in images.list_images(paths)] == [used.id]


def test_prune_asks_first(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    imported(root, tmp_path, "busybox", "old")
    imported(root, tmp_path, "busybox", "new")
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("n\n"))
    status, out, _ = sdctr(root, capsys, "image", "prune")
    assert status == 0 and "Are you sure" in out and "Deleted" not in out
    assert len(images.list_images(Paths.from_root(str(root)))) == 2


def test_run_with_pull_never_names_the_missing_image(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = sdctr(root, capsys, "run", "--pull", "never", "nosuch:1", "true")
    assert status == 125 and "no such image: nosuch:1" in err
    assert not (root / "containers").exists() or not any((root / "containers").iterdir())


@pytest.mark.parametrize(("age", "shown"), [
    (0.2, "Less than a second ago"), (1.5, "1 second ago"), (5, "5 seconds ago"),
    (61, "About a minute ago"), (100, "About a minute ago"), (2.5 * 3600, "3 hours ago"),
    (600, "10 minutes ago"), (3700, "About an hour ago"), (5 * 3600, "5 hours ago"),
    (3 * 86400, "3 days ago"), (20 * 86400, "2 weeks ago"), (90 * 86400, "3 months ago"),
    (3 * 365 * 86400, "3 years ago"),
])
def test_human_ago_as_docker_shows_it(age: float, shown: str) -> None:
    then = datetime.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.timezone.utc)
    assert human_ago("2026-01-02T03:04:05.123456789Z", then.timestamp() + age) == shown


def test_a_digest_reference_names_the_image_not_its_tag() -> None:
    """`rmi busybox@sha256:…` is about that image; it must not untag busybox:latest on the way."""
    digest = "sha256:" + "a" * 64
    assert images._names_tag("busybox", ["busybox:latest"]) == "busybox:latest"
    assert images._names_tag(f"busybox@{digest}", ["busybox:latest"]) is None
