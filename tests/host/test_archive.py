"""`load`, `save` and `export` against real tools: skopeo writes the docker-save and OCI archives
we load and reads the ones we save; hostile archives leave the store as it was; an export is the
container's writable layer over its image, whiteouts applied, with nothing left mounted."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shlex
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import skip_or_fail
from helpers.cli import run_sdctr, sdctr_argv, sdctr_env
from helpers.layout import Layout, Variant, busybox_layer, small_layer
from helpers.store import blob_files

from sdctr.image import archive
from sdctr.image import store as images
from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.storage import drivers, snapshotter
from sdctr.storage.mountinfo import mounts_under
from sdctr.storage.overlay import OverlaySnapshotter

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
        skip_or_fail("needs skopeo (tests/setup installs it)")
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
    driver = OverlaySnapshotter(paths)
    driver.unpack(image)
    top = driver.layer_dir(image.layers[-1])
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
    assert entry["RepoTags"] == ["docker.io/library/box:1"]  # full names, as skopeo writes them
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
LAYER_DIGEST = images.sha256_digest(GOOD_LAYER)
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
     "l.tar", "the image config says"),
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


@pytest.mark.parametrize(("kind", "target", "why"), [
    (tarfile.SYMTYPE, "/etc/passwd", "absolute"),
    (tarfile.SYMTYPE, "../../../etc/passwd", "goes up a directory"),
    (tarfile.LNKTYPE, "../outside", "goes up a directory"),
    (tarfile.SYMTYPE, "l.tar", "not in the archive"),  # a link to itself, followed once
])
def test_links_in_an_archive_lead_nowhere_outside(paths: Paths, tmp_path: Path, kind: bytes, target: str,
                                                  why: str) -> None:
    """The manifest's layer l.tar is a link: never followed on disk, refused when it leads out."""
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "c.json", GOOD_CONFIG)
        _add(tar, "manifest.json", GOOD_MANIFEST)
        link = tarfile.TarInfo("l.tar")
        link.type, link.linkname = kind, target
        tar.addfile(link)
    with pytest.raises(SdctrError) as e:
        archive.load(paths, str(path))
    assert "entry 'l.tar'" in str(e.value) and why in str(e.value)
    assert blob_files(paths.root) == set() and images.list_images(paths) == []


def test_not_an_archive(paths: Paths, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"this is no tar archive" * 100)
    with pytest.raises(SdctrError, match="not a tar archive"):
        archive.load(paths, str(junk))


def test_export_is_the_upper_layer_over_the_image(paths: Paths, layout: Path, tmp_path: Path) -> None:
    skopeo("copy", "-q", f"oci:{layout}:box", f"docker-archive:{tmp_path / 'box.tar'}:box:1")
    archive.load(paths, str(tmp_path / "box.tar"))
    image = images.resolve(paths, "box:1")
    driver = OverlaySnapshotter(paths)
    cid = "c" * 64
    driver.unpack(image)
    driver.prepare(cid, image.layers)
    upper = driver.container_dir(cid) / "upper"
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
    # the read-only view was mounted in tar's own namespace: nothing of it in ours, nor a directory
    assert not mounts_under(paths.run) and not (paths.run / "export").exists()
    driver.remove(cid)


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


@pytest.mark.parametrize("after", [1 << 20, 64 << 20], ids=["decompressing", "writing"])
def test_a_killed_save_o_leaves_no_temporary_and_the_old_file_whole(paths: Paths, tmp_path: Path,
                                                                      after: int) -> None:
    """`save -o` of a gzip image decompresses its layer (48 MB) into the store's tmp directory,
    then writes the archive aside: SIGKILL in either leaves neither behind, and the archive an
    earlier save wrote at that path is still the whole archive it was."""
    import signal

    tarball = tmp_path / "rootfs.tar.gz"
    with gzip.open(tarball, "wb", compresslevel=1) as gz:
        gz.write(small_layer("random", os.urandom(48 << 20)))
    images.import_tarball(paths, str(tarball), "box:1")
    out = tmp_path / "out"
    out.mkdir()
    archive.save(paths, ["box:1"], str(out / "box.tar"))
    before = (out / "box.tar").read_bytes()
    proc = subprocess.Popen(sdctr_argv("save", "-o", str(out / "box.tar"), "box:1", root=paths.root),
                            env=sdctr_env(), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while proc.poll() is None and time.monotonic() < deadline:  # until it writes
        if _written(proc.pid) > after:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the save ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert sorted(p.name for p in out.iterdir()) == ["box.tar"]
    assert (out / "box.tar").read_bytes() == before
    assert list((paths.root / "tmp").iterdir()) == []


def _written(pid: int) -> int:
    lines: list[str] = []
    with contextlib.suppress(FileNotFoundError):
        lines = Path(f"/proc/{pid}/io").read_text().splitlines()
    for line in lines:
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def test_a_dead_writers_output_temp_goes_at_the_next_save_o(paths: Paths, tmp_path: Path) -> None:
    """Where the file system has no O_TMPFILE, -o writes a named temp that its writer locks: the
    next -o into that directory deletes those whose lock is free, and leaves a live writer's."""
    import fcntl

    images.import_tarball(paths, str(_tar(tmp_path)), "box:1")
    dead, live, other = (tmp_path / n for n in (".a.tar.sdctr-tmp-1", ".b.tar.sdctr-tmp-2", ".c.tar.x"))
    for p in (dead, live, other):
        p.write_bytes(b"x")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        archive.save(paths, ["box:1"], str(tmp_path / "box.tar"))
        left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert left == [".b.tar.sdctr-tmp-2", ".c.tar.x"]


def _tar(tmp_path: Path) -> Path:
    path = tmp_path / "rootfs.tar"
    path.write_bytes(small_layer("motd", b"hi\n"))
    return path


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
    import time

    info = tarfile.TarInfo("l.tar")
    info.size = 64 << 20
    proc = subprocess.Popen(sdctr_argv("load", root=paths.root), env=sdctr_env(), stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE)
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
# --- documents that are JSON but not an image: refused before they reach the store ------------------

def _oci_archive(path: Path, config: object, *, manifest: dict[str, object] | None = None,
                 name: str = "docs:1", config_bytes: bytes | None = None) -> dict[str, str]:
    """An OCI archive of one image with ``config``: its entries' names for "config", "manifest"."""
    config_bytes = config_bytes if config_bytes is not None else json.dumps(config).encode()
    layer = {"mediaType": images.MEDIA_LAYER, "digest": LAYER_DIGEST, "size": len(GOOD_LAYER)}
    manifest_bytes = json.dumps({
        "schemaVersion": 2, "mediaType": images.MEDIA_MANIFEST, "layers": [layer],
        "config": {"mediaType": images.MEDIA_CONFIG, "digest": images.sha256_digest(config_bytes),
                   "size": len(config_bytes)},
        **(manifest or {})}).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": images.MEDIA_MANIFEST, "digest": images.sha256_digest(manifest_bytes),
        "size": len(manifest_bytes), "annotations": {"org.opencontainers.image.ref.name": name}}]}
    blobs = {"config": config_bytes, "manifest": manifest_bytes, "layer": GOOD_LAYER}
    names = {what: f"blobs/sha256/{images.sha256_digest(data)[7:]}" for what, data in blobs.items()}
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tar, "index.json", json.dumps(index).encode())
        for what, data in blobs.items():
            _add(tar, names[what], data)
    return names


def _config(**changes: object) -> dict[str, object]:
    return {**json.loads(GOOD_CONFIG), **changes}


def _manifest(**changes: object) -> tuple[dict[str, object], dict[str, object]]:
    return _config(), changes


@pytest.mark.parametrize(("documents", "why"), [
    (([1, 2], None), "config: is not a JSON object"),
    ((_config(config={"Env": "PATH=/bin"}), None), "config: config.Env is not a list of strings"),
    ((_config(config={"Labels": ["a"]}), None), "config: config.Labels is not an object of strings"),
    ((_config(rootfs="layers"), None), "config: rootfs is not an object"),
    ((_config(rootfs={"diff_ids": ["sha256:../../etc"]}), None), "config: rootfs.diff_ids is not"),
    ((_config(rootfs={"diff_ids": []}), None), "config: rootfs.diff_ids lists 0 layers, the manifest 1"),
    ((_config(history="yesterday"), None), "config: history is not a list"),
    (_manifest(layers=[{"digest": "sha256:../../etc/passwd"}]), "manifest: layers is not a list of"),
    (_manifest(config="c.json"), "manifest: config is not a descriptor"),
    (_manifest(layers=[{"digest": LAYER_DIGEST, "annotations": {images.UNPACKED_SIZE: "lots"}}]),
     "manifest: layers is not"),
])
def test_documents_that_are_no_image_are_refused(paths: Paths, tmp_path: Path,
                                                 documents: tuple[object, dict[str, object] | None],
                                                 why: str) -> None:
    """Each of these loaded fine once, and then broke every `sdctr images` that followed."""
    path = tmp_path / "docs.tar"
    config, manifest = documents
    names = _oci_archive(path, config, manifest=manifest)
    with pytest.raises(SdctrError) as e:
        archive.load(paths, str(path))
    which, _, reason = why.partition(": ")
    assert f"{path}: entry {names[which]!r}: {reason}" in str(e.value)
    assert blob_files(paths.root) == set() and images.list_images(paths) == []


def test_a_name_that_is_no_reference(paths: Paths, tmp_path: Path) -> None:
    _oci_archive(tmp_path / "name.tar", _config(), name="../../x:1")
    with pytest.raises(SdctrError, match=r"entry 'index.json': invalid reference format '../../x:1'"):
        archive.load(paths, str(tmp_path / "name.tar"))
    assert blob_files(paths.root) == set()


@pytest.mark.parametrize(("config_bytes", "why"), [
    (b"[" * 100_000 + b"]" * 100_000, "is not JSON"),  # deeper than Python's recursion limit
    (b" " * archive.MAX_DOCUMENT + GOOD_CONFIG, f"more than {archive.MAX_DOCUMENT}"),
])
def test_json_bombs_in_blobs(paths: Paths, tmp_path: Path, config_bytes: bytes, why: str) -> None:
    path = tmp_path / "bomb.tar"
    names = _oci_archive(path, None, config_bytes=config_bytes)
    with pytest.raises(SdctrError) as e:
        archive.load(paths, str(path))
    assert f"entry {names['config']!r}: " in str(e.value) and why in str(e.value)
    assert blob_files(paths.root) == set()


def test_one_bad_image_leaves_none_behind(paths: Paths, tmp_path: Path) -> None:
    """docker load would keep the images before the bad one; a half-loaded archive helps no one."""
    bad_config = json.dumps(_config(config={"Cmd": "sh"})).encode()
    entries = [{"Config": f"{n}.json", "RepoTags": [f"{n}:1"], "Layers": ["l.tar"]} for n in ("good", "bad")]
    files = {"good.json": GOOD_CONFIG, "bad.json": bad_config, "l.tar": GOOD_LAYER,
             "manifest.json": json.dumps(entries).encode()}
    path = _hostile(tmp_path, files)
    with pytest.raises(SdctrError, match=r"entry 'bad.json': config.Cmd is not a list of strings"):
        archive.load(paths, str(path))
    assert images.list_images(paths) == [] and blob_files(paths.root) == set()


def test_a_multi_platform_oci_archive_loads_this_hosts_image(paths: Paths, tmp_path: Path) -> None:
    other = "arm64" if ARCH != "arm64" else "amd64"
    lay = Layout(tmp_path / "multi")
    lay.add("multi", [Variant(other, ENV, ("other",), (small_layer("a", b"other\n"),)),
                      Variant(ARCH, ENV, ("mine",), (small_layer("a", b"mine\n"),))])
    skopeo("copy", "-q", "--all", f"oci:{lay.root}:multi", f"oci-archive:{tmp_path / 'multi.tar'}:multi:1")
    assert archive.load(paths, str(tmp_path / "multi.tar")) == ["Loaded image: multi:1"]
    assert images.resolve(paths, "multi:1").config.cmd == ("mine",)


def test_the_load_and_save_commands(paths: Paths, layout: Path, tmp_path: Path) -> None:
    """What a user types: a gzipped `docker save` on stdin, a bad archive (one line, 125),
    save to stdout, and to a directory that does not exist."""
    root = paths.root
    skopeo("copy", "-q", f"oci:{layout}:box", f"docker-archive:{tmp_path / 'box.tar'}:box:4")
    (tmp_path / "box.tar.gz").write_bytes(gzip.compress((tmp_path / "box.tar").read_bytes()))
    with open(tmp_path / "box.tar.gz", "rb") as stdin:
        r = run_sdctr("load", root=root, stdin=stdin)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Loaded image: box:4\n"
    _oci_archive(tmp_path / "bad.tar", _config(config={"Env": "x"}))
    r = run_sdctr("load", "-i", str(tmp_path / "bad.tar"), root=root)
    assert r.returncode == 125 and r.stdout == ""
    assert r.stderr.startswith(f"sdctr: error: {tmp_path / 'bad.tar'}: entry 'blobs/sha256/")
    assert len(r.stderr.splitlines()) == 2 and "Traceback" not in r.stderr  # the error and its hint
    with open(tmp_path / "out.tar", "wb") as stdout:
        r = run_sdctr("save", "box:4", root=root, stdout=stdout)
    assert r.returncode == 0, r.stderr
    config = json.loads(skopeo("inspect", "--config", f"docker-archive:{tmp_path / 'out.tar'}"))
    assert tuple(config["config"]["Cmd"]) == CMD
    r = run_sdctr("save", "-o", str(tmp_path / "no/such/dir.tar"), "box:4", root=root)
    assert r.returncode == 125 and "cannot write" in r.stderr and "internal error" not in r.stderr


def test_load_zstd_a_compressed_archive_and_zstd_layers(paths: Paths, layout: Path, tmp_path: Path) -> None:
    """An archive compressed by the zstd tool, and an OCI archive whose layers skopeo compressed
    with zstd (as podman pushes them): both load, and the layers unpack to their content."""
    if shutil.which("zstd") is None:
        skip_or_fail("needs zstd (tests/setup installs it)")
    skopeo("copy", "-q", f"oci:{layout}:box", f"docker-archive:{tmp_path / 'box.tar'}:box:zst")
    subprocess.run(["zstd", "-q", str(tmp_path / "box.tar"), "-o", str(tmp_path / "box.tar.zst")], check=True)
    assert (tmp_path / "box.tar.zst").read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd's magic
    r = run_sdctr("load", "-i", str(tmp_path / "box.tar.zst"), root=paths.root)
    assert (r.returncode, r.stdout) == (0, "Loaded image: box:zst\n"), r.stderr
    skopeo("copy", "-q", "--dest-compress-format", "zstd", f"oci:{layout}:box",
           f"oci-archive:{tmp_path / 'zstd-layers.tar'}:box:zstd-layers")
    assert archive.load(paths, str(tmp_path / "zstd-layers.tar")) == ["Loaded image: box:zstd-layers"]
    driver = OverlaySnapshotter(paths)
    for name in ("box:zst", "box:zstd-layers"):
        image = images.resolve(paths, name)
        driver.unpack(image)
        top = driver.layer_dir(image.layers[-1])
        assert (top / "etc/flavour").read_text() == "archive\n"
    manifest = json.loads(paths.blob(images.resolve(paths, "box:zstd-layers").manifest_digest).read_bytes())
    assert {m["mediaType"] for m in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}


def test_save_of_a_bare_name_writes_every_tag(paths: Paths, layout: Path, tmp_path: Path) -> None:
    """As `docker save fedora > fedora-all.tar`: all of the repository's tags, no other's."""
    skopeo("copy", "-q", f"oci:{layout}:box", f"docker-archive:{tmp_path / 'in.tar'}:box:1")
    archive.load(paths, str(tmp_path / "in.tar"))
    (tmp_path / "small.tar").write_bytes(small_layer("small", b"small\n"))
    images.import_tarball(paths, str(tmp_path / "small.tar"), "box:small")
    images.tag(paths, "box:1", "other:1")
    out = tmp_path / "all.tar"
    archive.save(paths, ["box"], str(out))
    with tarfile.open(out) as tar:
        entries = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    tags = sorted(tag for e in entries for tag in e["RepoTags"])
    assert tags == ["docker.io/library/box:1", "docker.io/library/box:small"]
    config = json.loads(skopeo("inspect", "--config", f"docker-archive:{out}:box:small"))
    assert config["rootfs"]["diff_ids"] == [images.sha256_digest(small_layer("small", b"small\n"))]


def test_export_of_a_running_container(paths: Paths, layout: Path, tmp_path: Path) -> None:
    """While the container's own overlay is mounted (it runs), export reads that mount as it is
    (no second overlay on a live writable layer) and sees what the container wrote so far."""
    skopeo("copy", "-q", f"oci:{layout}:box", f"docker-archive:{tmp_path / 'box.tar'}:box:1")
    archive.load(paths, str(tmp_path / "box.tar"))
    image = images.resolve(paths, "box:1")
    driver, cid = drivers.driver("overlay", paths), "d" * 64
    rootfs = paths.run / cid / "rootfs"
    driver.unpack(image)
    driver.prepare(cid, image.layers)
    snapshotter.activate(driver, cid, image.layers, rootfs)
    try:
        (rootfs / "tmp").mkdir(exist_ok=True)
        (rootfs / "tmp/running").write_text("still running\n")
        (rootfs / "etc/flavour").unlink()
        out = tmp_path / "running.tar"
        with _writing(rootfs / "tmp/growing"):  # GNU tar: "file changed as we read it", status 1
            archive.export(paths, cid, image, str(out))
        assert not (paths.run / "export").exists()  # no read-only overlay was mounted for it
        with tarfile.open(out) as tar:
            assert tar.extractfile("tmp/running").read() == b"still running\n"  # type: ignore[union-attr]
            assert "etc/flavour" not in tar.getnames()
        (rootfs / "tmp/after").write_text("the container's mount still works\n")
    finally:
        driver.deactivate(cid, rootfs)
    assert [m.target for m in mounts_under(paths.run)] == []
    driver.remove(cid)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A file that grows all the while, as a busy container's log does."""
    stop = threading.Event()

    def grow() -> None:
        with open(path, "wb") as f:
            while not stop.is_set():
                f.write(b"x" * 65536)
                f.flush()
                time.sleep(0.001)

    writer = threading.Thread(target=grow)
    writer.start()
    try:
        while not path.exists() or path.stat().st_size < 1 << 20:
            time.sleep(0.01)
        yield
    finally:
        stop.set()
        writer.join()


def test_save_into_a_pipe_closed_early_is_quiet(paths: Paths, tmp_path: Path) -> None:
    """`sdctr save IMG | head -c 1`: the reader left; no traceback, no internal error."""
    raw = tmp_path / "rootfs.tar"  # a megabyte of noise: more than a pipe holds
    with tarfile.open(raw, "w") as tar:
        _add(tar, "etc/noise", os.urandom(1 << 20))
    images.import_tarball(paths, str(raw), "big:1")
    save = shlex.join(sdctr_argv("save", "big:1", root=paths.root))
    r = subprocess.run(["bash", "-c", f"{save} | head -c 1 >/dev/null; echo ${{PIPESTATUS[0]}}"],
                       capture_output=True, text=True, env=sdctr_env())
    assert r.stdout.strip() == "141" and r.stderr == "", r.stderr


# --- hostile archives and registries: bounds over the whole archive, sizes from every descriptor -----

def _pax_flood(entries: int, record: int = (1 << 20) - 2048) -> Iterator[bytes]:
    info = tarfile.TarInfo("f")
    info.pax_headers = {"comment": "x" * record}
    one = info.tobuf(tarfile.PAX_FORMAT)
    for _ in range(entries):
        yield one
    yield b"\0" * 1024


def test_a_pax_flood_on_stdin_is_refused_with_one_line(paths: Paths) -> None:
    """260 entries with a pax header of a MiB each: `sdctr load` reading it from a pipe stops at
    the archive's bound, exit 125, and keeps nothing."""
    from sdctr.oci import layers

    proc = subprocess.Popen(sdctr_argv("load", root=paths.root), env=sdctr_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    with contextlib.suppress(BrokenPipeError):  # it stops reading when it refuses
        for chunk in _pax_flood(layers.MAX_HEADERS // layers.MAX_ENTRY_HEADERS + 4):
            proc.stdin.write(chunk)
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 125, err
    first = err.splitlines()[0]
    assert first.startswith("sdctr: error: stdin: "), err
    assert f"headers exceed {layers.MAX_HEADERS} bytes in all" in first, err
    assert blob_files(paths.root) == set() and images.list_images(paths) == []


def _sparse_layer(declared: int) -> bytes:
    """GNU tar's sparse format 1.0: a file declaring ``declared`` bytes, 512 of them stored."""
    info = tarfile.TarInfo("GNUSparseFile.0/bomb")
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "bomb",
                        "GNU.sparse.realsize": str(declared)}
    data = f"1\n{declared - 512}\n512\n".encode().ljust(512, b"\0") + b"x" * 512
    info.size = len(data)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_sparse_bomb_is_refused_by_import_with_one_line(paths: Paths, tmp_path: Path) -> None:
    from sdctr.oci import layers

    bomb = tmp_path / "bomb.tar"
    bomb.write_bytes(_sparse_layer(10 ** 12))
    result = run_sdctr("import", str(bomb), "bomb:1", root=paths.root)
    assert result.returncode == 125, result.stderr
    digest = images.sha256_digest(bomb.read_bytes())
    assert result.stderr.splitlines()[0] == (
        f"sdctr: error: image bomb:1: layer {digest}: entry 'bomb': its files declare more than "
        f"{layers.MAX_SIZE} bytes in all (a sparse or compression bomb?)")
    assert blob_files(paths.root) == set() and images.list_images(paths) == []


def test_a_sparse_bomb_in_a_loaded_image_leaves_no_layer_behind(paths: Paths, tmp_path: Path) -> None:
    """load stores layers as they are; unpacking one refuses it and keeps no partial layer."""
    layer = _sparse_layer(10 ** 12)
    config = json.dumps({"os": "linux", "rootfs": {"type": "layers",
                                                    "diff_ids": [images.sha256_digest(layer)]}}).encode()
    path = _hostile(tmp_path, {"c.json": config, "l.tar": layer, "manifest.json": GOOD_MANIFEST})
    archive.load(paths, str(path))
    image = images.resolve(paths, "evil:1")
    driver = OverlaySnapshotter(paths)
    with pytest.raises(SdctrError) as e:
        driver.unpack(image)
    assert str(e.value).startswith(f"image evil:1: layer {images.sha256_digest(layer)}: entry 'bomb': "
                                   "its files declare more than")
    assert list(driver.layers_dir.iterdir()) == []


@pytest.mark.parametrize(("size", "why"), [
    (None, "gives no size (an OCI descriptor must)"),
    (1, f"says 1 bytes; the blob has {len(GOOD_LAYER)}"),
])
def test_a_descriptor_without_its_size_is_refused(paths: Paths, tmp_path: Path, size: object,
                                                  why: str) -> None:
    layer: dict[str, object] = {"mediaType": images.MEDIA_LAYER, "digest": LAYER_DIGEST}
    if size is not None:
        layer["size"] = size
    path = tmp_path / "sizeless.tar"
    names = _oci_archive(path, _config(), manifest={"layers": [layer]})
    with pytest.raises(SdctrError) as e:
        archive.load(paths, str(path))
    assert str(e.value) == f"{path}: entry {names['manifest']!r}: the descriptor of {LAYER_DIGEST} {why}"
    assert blob_files(paths.root) == set() and images.list_images(paths) == []


@pytest.mark.parametrize("which", ["layers", "config"])
def test_a_registry_descriptor_without_a_size_is_refused(paths: Paths, monkeypatch: pytest.MonkeyPatch,
                                                         which: str) -> None:
    """A registry that gives no size could stream a blob without end into the store: refused before
    any blob is fetched."""
    import httpx

    from sdctr import config
    from sdctr.image import registry

    layer = {"mediaType": images.MEDIA_LAYER, "digest": LAYER_DIGEST, "size": len(GOOD_LAYER)}
    conf = {"mediaType": images.MEDIA_CONFIG, "digest": images.sha256_digest(GOOD_CONFIG),
            "size": len(GOOD_CONFIG)}
    del (layer if which == "layers" else conf)["size"]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": images.MEDIA_MANIFEST, "config": conf,
                           "layers": [layer]}).encode()
    blobs = {LAYER_DIGEST: GOOD_LAYER, conf["digest"]: GOOD_CONFIG}
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path == "/v2/test/img/manifests/1":
            return httpx.Response(200, content=manifest, headers={"Content-Type": images.MEDIA_MANIFEST})
        digest = request.url.path.rpartition("/")[2]
        return httpx.Response(200, content=blobs[digest]) if digest in blobs else httpx.Response(404)

    real = httpx.Client
    monkeypatch.setattr(httpx, "Client", lambda **kw: real(transport=httpx.MockTransport(handler), **kw))
    with pytest.raises(SdctrError) as e:
        registry.pull(paths, "reg.example.com/test/img:1", registries=config.Registries())
    digest = layer["digest"] if which == "layers" else conf["digest"]
    assert str(e.value) == (f"reg.example.com/test/img:1: blob {digest}: the manifest gives it no size, so "
                            "its download could not be bounded (an OCI descriptor must have one)")
    assert asked == ["/v2/test/img/manifests/1"]
    assert blob_files(paths.root) == set() and images.list_images(paths) == []
