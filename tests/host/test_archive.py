"""`load`, `save` and `export` against real tools: skopeo writes the docker-save and OCI archives
we load and reads the ones we save; hostile archives leave the store as it was; an export is the
container's writable layer over its image, whiteouts applied, with nothing left mounted."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_helpers import Layout, Variant, blob_files, busybox_layer, small_layer

from sdctr import archive, images, storage
from sdctr.log import SdctrError
from sdctr.state import Paths
from sdctr.storage import mounts_under

pytestmark = pytest.mark.host

ARCH = images.host_architecture()
CMD = ("/bin/sh", "-c", "cat /etc/flavour")
ENV = ("PATH=/bin", "WHO=archive")


@pytest.fixture
def paths(tmp_path: Path) -> Iterator[Paths]:
    p = Paths.from_root(str(tmp_path / "root"))
    yield p
    left = mounts_under(tmp_path)
    for m in reversed(left):
        subprocess.run(["umount", str(m.target)], check=False)
    assert not left, f"left mounted: {[str(m.target) for m in left]}"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("skopeo") is None:
        pytest.fail("needs skopeo (tests/setup installs it)")
    work = tmp_path_factory.mktemp("archive-layout")
    lay = Layout(work / "layout")
    lay.add("box", [Variant(ARCH, ENV, CMD, (busybox_layer(work), small_layer("flavour", b"archive\n")))])
    return lay.root


def skopeo(*args: str) -> str:
    return subprocess.run(["skopeo", "--insecure-policy", *args], check=True, capture_output=True,
                          text=True).stdout


def test_load_a_docker_archive_made_by_skopeo(paths: Paths, layout: Path, tmp_path: Path) -> None:
    skopeo("copy", "-q", f"oci:{layout}:box", f"docker-archive:{tmp_path / 'box.tar'}:example.com/team/box:2")
    assert archive.load(paths, str(tmp_path / "box.tar")) == ["Loaded image: example.com/team/box:2"]
    image = images.resolve(paths, "example.com/team/box:2")
    assert image.config.cmd == CMD and image.config.env == ENV and len(image.layers) == 2
    # the layers unpack (and meet the tar rules and their diff ids) as any image's do
    storage.driver(paths).ensure_layers(image)
    top = storage.driver(paths).layer_dir(image.layers[-1])  # type: ignore[attr-defined]
    assert (top / "etc/flavour").read_text() == "archive\n"


def test_load_an_oci_archive_made_by_skopeo(paths: Paths, layout: Path, tmp_path: Path) -> None:
    skopeo("copy", "-q", f"oci:{layout}:box", f"oci-archive:{tmp_path / 'box-oci.tar'}:box:3")
    assert archive.load(paths, str(tmp_path / "box-oci.tar")) == ["Loaded image: box:3"]
    assert images.resolve(paths, "box:3").config.cmd == CMD
    # a bare tag as the only name: the image loads untagged, as its name is unknown
    skopeo("copy", "-q", f"oci:{layout}:box", f"oci-archive:{tmp_path / 'bare.tar'}:latest")
    [line] = archive.load(paths, str(tmp_path / "bare.tar"))
    assert line.startswith("Loaded image ID: sha256:")


def test_save_is_read_by_skopeo_as_both_formats(paths: Paths, layout: Path, tmp_path: Path) -> None:
    skopeo("copy", "-q", f"oci:{layout}:box", f"docker-archive:{tmp_path / 'in.tar'}:box:1")
    archive.load(paths, str(tmp_path / "in.tar"))
    image = images.resolve(paths, "box:1")
    out = tmp_path / "saved.tar"
    archive.save(paths, ["box:1"], str(out))
    for transport in ("docker-archive", "oci-archive"):
        copied = tmp_path / f"copy-{transport}"
        skopeo("copy", "-q", f"{transport}:{out}", f"oci:{copied}:x")
        index = json.loads((copied / "index.json").read_text())
        manifest = json.loads((copied / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
        config = json.loads((copied / "blobs/sha256" / manifest["config"]["digest"][7:]).read_text())
        assert config["rootfs"]["diff_ids"] == list(image.layers), transport  # the same layers
        assert tuple(config["config"]["Cmd"]) == CMD, transport
        if transport == "oci-archive":  # skopeo re-serialises a docker-archive's config; not an OCI one's
            assert manifest["config"]["digest"] == f"sha256:{image.id}"
    with tarfile.open(out) as tar:
        [entry] = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert entry["RepoTags"] == ["box:1"]
    # and back: a second store gets the same image, tag and id
    other = Paths.from_root(str(tmp_path / "other"))
    assert archive.load(other, str(out)) == ["Loaded image: box:1"]
    assert images.resolve(other, "box:1").id == image.id
    assert not list(tmp_path.glob(".saved.tar.*"))  # written aside, renamed in


def test_an_old_docker_save_with_a_linked_layer(paths: Paths, tmp_path: Path) -> None:
    """Docker before 25 wrote <id>/layer.tar, and a symlink for a layer two images share."""
    layer = small_layer("shared", b"both\n")
    diff = images.sha256_digest(layer)
    configs = {}
    for name in ("one", "two"):
        configs[name] = json.dumps({"architecture": ARCH, "os": "linux", "config": {"Cmd": [name]},
                                    "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
    files: dict[str, bytes] = {"aaa/layer.tar": layer, "aaa/VERSION": b"1.0", "aaa/json": b"{}"}
    for config in configs.values():
        files[f"{images.sha256_digest(config)[7:]}.json"] = config
    files["manifest.json"] = json.dumps([
        {"Config": f"{images.sha256_digest(c)[7:]}.json", "RepoTags": [f"{n}:1"],
         "Layers": ["aaa/layer.tar" if n == "one" else "bbb/layer.tar"]}
        for n, c in configs.items()]).encode()
    tar_path = tmp_path / "old.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, data in files.items():
            _add(tar, name, data)
        link = tarfile.TarInfo("bbb/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, "../aaa/layer.tar"
        tar.addfile(link)
    assert archive.load(paths, str(tar_path)) == ["Loaded image: one:1", "Loaded image: two:1"]
    one, two = images.resolve(paths, "one:1"), images.resolve(paths, "two:1")
    assert one.layer_blobs == two.layer_blobs == (diff,) and one.config.cmd == ("one",)
    # the legacy json/VERSION files were read and dropped: the store holds what the images use
    used = {b[7:] for i in (one, two) for b in images.blobs_of(paths, i.manifest_digest)}
    assert blob_files(paths.root) == used


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _hostile(tmp_path: Path, files: dict[str, bytes]) -> Path:
    path = tmp_path / "hostile.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            _add(tar, name, data)
    return path


GOOD_LAYER = small_layer("x", b"x\n")
GOOD_CONFIG = json.dumps({"os": "linux", "rootfs": {"type": "layers",
                                                    "diff_ids": [images.sha256_digest(GOOD_LAYER)]}}).encode()
GOOD_MANIFEST = json.dumps([{"Config": "c.json", "RepoTags": ["evil:1"], "Layers": ["l.tar"]}]).encode()


@pytest.mark.parametrize(("files", "entry", "why"), [
    ({"../../escape": b"x", "manifest.json": GOOD_MANIFEST}, "../../escape", "goes up a directory"),
    ({"/etc/escape": b"x", "manifest.json": GOOD_MANIFEST}, "/etc/escape", "absolute"),
    ({"c.json": GOOD_CONFIG, "manifest.json": GOOD_MANIFEST}, "l.tar", "not in the archive"),
    ({"c.json": GOOD_CONFIG, "l.tar": GOOD_LAYER, "manifest.json": json.dumps(
        [{"Config": "c.json", "Layers": ["../../../etc/passwd"]}]).encode()},
     "../../../etc/passwd", "goes up"),
    ({"blobs/sha256/" + "0" * 64: b"not what the name says", "index.json": b"{}"},
     "blobs/sha256/" + "0" * 64, "failed verification"),
    ({"c.json": GOOD_CONFIG, "l.tar": small_layer("y", b"other\n"), "manifest.json": GOOD_MANIFEST},
     None, "is not the layer the image config names"),
    ({"manifest.json": b"[" * (archive.MAX_DOCUMENT + 1)}, "manifest.json", "more than"),
    ({"c.json": GOOD_CONFIG}, None, "neither a `docker save` archive"),
])
def test_hostile_archives_are_refused_and_leave_nothing(paths: Paths, tmp_path: Path,
                                                        files: dict[str, bytes], entry: str | None,
                                                        why: str) -> None:
    path = _hostile(tmp_path, files)
    before = sorted(p.name for p in tmp_path.iterdir() if p.name != "root")
    with pytest.raises(SdctrError) as e:
        archive.load(paths, str(path))
    assert str(path) in str(e.value) and why in str(e.value)
    if entry is not None:
        assert repr(entry) in str(e.value)
    assert blob_files(paths.root) == set()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "root") == before
    assert not (tmp_path.parent / "escape").exists() and not Path("/etc/escape").exists()


def test_not_an_archive(paths: Paths, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"this is no tar archive" * 100)
    with pytest.raises(SdctrError, match="not a tar archive"):
        archive.load(paths, str(junk))


def test_export_is_the_upper_layer_over_the_image(paths: Paths, layout: Path, tmp_path: Path) -> None:
    skopeo("copy", "-q", f"oci:{layout}:box", f"docker-archive:{tmp_path / 'box.tar'}:box:1")
    archive.load(paths, str(tmp_path / "box.tar"))
    image = images.resolve(paths, "box:1")
    driver = storage.driver(paths)
    cid = "c" * 64
    driver.ensure_layers(image)
    driver.prepare(cid, image)
    upper = driver.container_dir(cid) / "upper"  # type: ignore[attr-defined]
    (upper / "root").mkdir()
    (upper / "root/new").write_text("written in the container\n")
    (upper / "etc").mkdir()
    os.mknod(upper / "etc/flavour", 0o600 | 0o020000, os.makedev(0, 0))  # overlay's whiteout: deleted
    out = tmp_path / "export.tar"
    archive.export(paths, cid, image, str(out))
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        assert tar.extractfile("root/new").read() == b"written in the container\n"  # type: ignore[union-attr]
    assert "bin/busybox" in names and "etc/flavour" not in names
    assert not any(n.startswith(("/", "..", "./")) for n in names)
    assert not list((paths.run / "export").iterdir())  # the read-only mount is gone, and its dir
    driver.remove(cid)


def _docker_archive(tmp_path: Path, config: dict[str, object], tags: list[str]) -> Path:
    raw = json.dumps(config).encode()
    manifest = json.dumps([{"Config": "c.json", "RepoTags": tags, "Layers": ["l.tar"]}]).encode()
    return _hostile(tmp_path, {"c.json": raw, "l.tar": GOOD_LAYER, "manifest.json": manifest})


@pytest.mark.parametrize(("bad", "why"), [
    ({"config": "x"}, "config section that is not an object"),
    ({"created": 5}, "created that is not a string"),
    ({"config": {"Cmd": "sh -c x"}}, "Cmd that is not a list of strings"),
    ({"rootfs": {"diff_ids": "sha256:x"}}, "no list of layer digests"),
])
def test_a_malformed_config_is_refused_before_the_image_exists(paths: Paths, tmp_path: Path,
                                                               bad: dict[str, object], why: str) -> None:
    good = json.loads(GOOD_CONFIG)
    with pytest.raises(SdctrError, match=why):
        archive.load(paths, str(_docker_archive(tmp_path, {**good, **bad}, ["evil:1"])))
    assert blob_files(paths.root) == set() and images.list_images(paths) == []


def test_an_invalid_tag_is_refused_and_leaves_nothing(paths: Paths, tmp_path: Path) -> None:
    with pytest.raises(SdctrError, match="not a valid name"):
        archive.load(paths, str(_docker_archive(tmp_path, json.loads(GOOD_CONFIG), ["UPPER:1"])))
    assert blob_files(paths.root) == set()


def test_a_header_claiming_gigabytes_is_refused_unbuffered(paths: Paths, tmp_path: Path) -> None:
    """A GNU long-name header of 1.5 GiB, gzipped to nothing: tarfile would read it in one go."""
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, 3 << 29
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 4096))
    with pytest.raises(SdctrError, match="tar bomb"):
        archive.load(paths, str(bomb))
    assert blob_files(paths.root) == set()


def test_prune_after_save_and_load_into_the_same_store(paths: Paths, tmp_path: Path) -> None:
    """An imported gzip layer is saved plain: loading the save gives the image a second manifest
    with the same id. The tag moves to it; prune removes the old one by its manifest."""
    tarball = tmp_path / "rootfs.tar.gz"
    tarball.write_bytes(gzip.compress(small_layer("motd", b"hi\n")))
    first = images.import_tarball(paths, str(tarball), "box:1")
    archive.save(paths, ["box:1"], str(tmp_path / "again.tar"))
    archive.load(paths, str(tmp_path / "again.tar"))
    assert [i.repo_tags for i in images.list_images(paths)].count(()) == 1  # the old one, untagged
    lines, freed = images.prune(paths, set())
    assert lines == [f"Deleted: sha256:{first.id}"] and freed > 0
    assert images.resolve(paths, "box:1").id == first.id


def test_save_of_a_repository_takes_all_its_tags(paths: Paths, layout: Path, tmp_path: Path) -> None:
    skopeo("copy", "-q", f"oci:{layout}:box", f"docker-archive:{tmp_path / 'in.tar'}:app:1")
    archive.load(paths, str(tmp_path / "in.tar"))
    images.tag(paths, "app:1", "app:2")
    archive.save(paths, ["app"], str(tmp_path / "app.tar"))
    other = Paths.from_root(str(tmp_path / "other"))
    assert archive.load(other, str(tmp_path / "app.tar")) == ["Loaded image: app:1", "Loaded image: app:2"]


def test_a_terminated_load_leaves_no_temporary_blob(paths: Paths, tmp_path: Path) -> None:
    """SIGTERM halfway through a layer: the clean-up runs as for Ctrl-C."""
    import signal
    import sys
    import time

    info = tarfile.TarInfo("l.tar")
    info.size = 64 << 20
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "sdctr", "--root", str(paths.root), "load"],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdin is not None
    proc.stdin.write(info.tobuf() + b"x" * (8 << 20))
    proc.stdin.flush()
    tmp_blobs = paths.root / "blobs/sha256"
    deadline = time.monotonic() + 10
    while not (tmp_blobs.is_dir() and any(tmp_blobs.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(tmp_blobs.iterdir()), "the load never started writing"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    proc.stdin.close()
    assert list(tmp_blobs.iterdir()) == []
