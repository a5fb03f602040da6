"""The image store: import, references, resolution, tags, removal and its garbage collection."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import tarfile
import threading
from pathlib import Path

import pytest
from helpers.store import blob_files, rootfs_tar

from sdctr.image import store as images
from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.storage import overlay as storage


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths.from_root(str(tmp_path / "root"))


def test_import_writes_an_oci_image_and_tags_it(paths: Paths, tmp_path: Path) -> None:
    tarball, raw = rootfs_tar(tmp_path)
    image = images.import_tarball(paths, str(tarball), "busybox")
    assert image.repo_tags == ("busybox:latest",)
    assert image.layers == ("sha256:" + hashlib.sha256(raw).hexdigest(),)
    assert image.layer_blobs == ("sha256:" + hashlib.sha256(tarball.read_bytes()).hexdigest(),)
    assert image.size == len(b"#!fake shell\n") + len(b"hello\n")
    assert json.loads((paths.root / "images.json").read_text())["repositories"] == {
        "busybox:latest": image.manifest_digest}
    manifest = json.loads((paths.root / "blobs/sha256" / image.manifest_digest[7:]).read_bytes())
    assert manifest["mediaType"] == images.MEDIA_MANIFEST
    assert manifest["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    config_bytes = (paths.root / "blobs/sha256" / image.id).read_bytes()
    assert hashlib.sha256(config_bytes).hexdigest() == image.id
    config = json.loads(config_bytes)
    assert config["os"] == "linux" and config["architecture"] == images.host_architecture()
    assert config["rootfs"] == {"type": "layers", "diff_ids": list(image.layers)}
    assert image.created.endswith("Z") and image.created == config["created"]
    assert blob_files(paths.root) == {image.id, image.manifest_digest[7:], image.layer_blobs[0][7:]}


def test_import_from_stdin_and_uncompressed(paths: Paths, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    tarball, raw = rootfs_tar(tmp_path, compress=False)

    class Stdin:
        buffer = io.BytesIO(tarball.read_bytes())

    monkeypatch.setattr(sys, "stdin", Stdin)
    image = images.import_tarball(paths, "-", "me/app:v1")
    assert image.repo_tags == ("me/app:v1",)
    assert image.layer_blobs == image.layers == ("sha256:" + hashlib.sha256(raw).hexdigest(),)


def test_import_with_changes_sets_the_config(paths: Paths, tmp_path: Path) -> None:
    changes = images.parse_changes(['CMD ["/bin/sh", "-c", "echo hi"]', "ENTRYPOINT /bin/tini",
                                    "ENV A=1 B='two words'", "ENV A=3", "EXPOSE 80 53/udp", "WORKDIR /srv",
                                    "USER nobody", "LABEL org.example.team=core"])
    tarball = str(rootfs_tar(tmp_path)[0])
    image = images.import_tarball(paths, tarball, "x", changes=changes)
    c = image.config
    assert c.cmd == ("/bin/sh", "-c", "echo hi")
    assert c.entrypoint == ("/bin/sh", "-c", "/bin/tini")
    assert c.env == ("A=3", "B=two words")
    assert c.exposed_ports == ("53/udp", "80/tcp")
    assert (c.workdir, c.user, c.labels) == ("/srv", "nobody", {"org.example.team": "core"})
    with pytest.raises(SdctrError, match="not supported"):
        images.parse_changes(["RUN rm -rf /"])
    with pytest.raises(SdctrError, match="cannot be set"):
        images.import_tarball(paths, tarball, "x", changes={"Shell": ["/bin/sh"]})


def test_resolve_by_name_tag_full_name_id_and_prefix(paths: Paths, tmp_path: Path) -> None:
    image = images.import_tarball(paths, str(rootfs_tar(tmp_path)[0]), "busybox:1.36")
    for ref in ("busybox:1.36", "docker.io/library/busybox:1.36", "library/busybox:1.36", image.id,
                f"sha256:{image.id}", image.id[:12], image.id[:3], f"busybox@{image.manifest_digest}"):
        assert images.resolve(paths, ref).id == image.id, ref
    with pytest.raises(SdctrError, match=r"no such image: busybox$") as e:
        images.resolve(paths, "busybox")  # :latest was never imported
    assert e.value.hint and "sdctr import" in e.value.hint and "sdctr pull" in e.value.hint


def test_resolve_by_full_id_loads_that_image_only(paths: Paths, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` resolves its image by full id at every start: the manifests say which image has that
    id (its config digest), so no other image's config is read."""
    others = [images.import_tarball(paths, str(rootfs_tar(tmp_path, f"other{i}")[0]), f"other{i}")
              for i in range(3)]
    wanted = images.import_tarball(paths, str(rootfs_tar(tmp_path, "wanted")[0]), "wanted")
    (paths.root / "blobs/sha256" / others[0].id).unlink()  # an unreadable image is passed over
    loaded: list[str] = []
    real = images._load

    def counting(paths: Paths, idx: dict[str, object], manifest: str) -> images.Image:
        loaded.append(manifest)
        return real(paths, idx, manifest)

    monkeypatch.setattr(images, "_load", counting)
    for ref in (wanted.id, f"sha256:{wanted.id}"):
        assert images.resolve(paths, ref) == wanted
    assert loaded == [wanted.manifest_digest] * 2
    with pytest.raises(SdctrError, match="no such image"):
        images.resolve(paths, "0" * 64)


def test_registry_names_keep_their_domain(paths: Paths, tmp_path: Path) -> None:
    images.import_tarball(paths, str(rootfs_tar(tmp_path)[0]), "registry.example.com:5000/team/app")
    assert images.resolve(paths, "registry.example.com:5000/team/app:latest").repo_tags == (
        "registry.example.com:5000/team/app:latest",)
    with pytest.raises(SdctrError, match="no such image"):
        images.resolve(paths, "team/app")


@pytest.mark.parametrize(("ref", "why"), [
    ("Busybox", "must be lowercase"),
    ("busybox:bad tag", "tag"),
    ("busybox:", "tag"),
    ("", "1 to 255"),
    ("-busybox", "name components"),
    ("a//b", "name components"),
    ("busybox@sha256:zz", "digest"),
    ("bad_host!/x", "name components"),
    ("a" * 64, "64-character hex"),
    ("busybox@sha256:" + "a" * 64, "cannot carry a digest"),
    ("x" * 256, "1 to 255"),
])
def test_bad_references_are_refused_before_reading_anything(paths: Paths, tmp_path: Path, ref: str,
                                                            why: str) -> None:
    with pytest.raises(SdctrError, match=why):
        images.import_tarball(paths, str(tmp_path / "does-not-exist.tar"), ref)
    assert not (paths.root / "blobs").exists()


def test_list_tag_and_remove(paths: Paths, tmp_path: Path) -> None:
    a = images.import_tarball(paths, str(rootfs_tar(tmp_path, "a")[0]), "a")
    b = images.import_tarball(paths, str(rootfs_tar(tmp_path, "b")[0]), "b:1")
    images.tag(paths, "a", "a:stable")
    images.tag(paths, "a:stable", "quay.io/me/a:v2")
    assert {i.id: i.repo_tags for i in images.list_images(paths)} == {
        a.id: ("a:latest", "a:stable", "quay.io/me/a:v2"), b.id: ("b:1",)}
    storage.OverlaySnapshotter(paths).unpack(a)
    assert (paths.root / "overlay/layers" / a.layers[0][7:] / "etc/motd").read_text() == "a\n"

    with pytest.raises(SdctrError, match="referenced in 3 repositories"):
        images.remove(paths, a.id[:8])
    assert images.remove(paths, "a:stable") == ["Untagged: a:stable"]
    assert images.remove(paths, "a") == ["Untagged: a:latest"]
    assert blob_files(paths.root) >= {a.id, b.id}
    assert images.remove(paths, "quay.io/me/a:v2") == ["Untagged: quay.io/me/a:v2", f"Deleted: sha256:{a.id}"]
    assert blob_files(paths.root) == {b.id, b.manifest_digest[7:], b.layer_blobs[0][7:]}
    assert not (paths.root / "overlay/layers" / a.layers[0][7:]).exists()  # its unpacked layer too
    assert [i.id for i in images.list_images(paths)] == [b.id]

    images.tag(paths, "b:1", "b:2")
    assert images.remove(paths, b.id, force=True) == ["Untagged: b:1", "Untagged: b:2",
                                                      f"Deleted: sha256:{b.id}"]
    assert blob_files(paths.root) == set()
    with pytest.raises(SdctrError, match="no such image: b:1"):
        images.remove(paths, "b:1")


def test_shared_layer_blob_survives_removal_of_one_image(paths: Paths, tmp_path: Path) -> None:
    tarball = rootfs_tar(tmp_path)[0]
    one = images.import_tarball(paths, str(tarball), "one")
    two = images.import_tarball(paths, str(tarball), "two")
    assert one.layer_blobs == two.layer_blobs
    images.remove(paths, "one")
    assert two.layer_blobs[0][7:] in blob_files(paths.root)
    assert images.resolve(paths, "two").layers == one.layers


def test_reimport_leaves_the_old_image_dangling(paths: Paths, tmp_path: Path) -> None:
    old = images.import_tarball(paths, str(rootfs_tar(tmp_path, "old")[0]), "app")
    new = images.import_tarball(paths, str(rootfs_tar(tmp_path, "new")[0]), "app")
    listed = {i.id: i.repo_tags for i in images.list_images(paths)}
    assert listed == {old.id: (), new.id: ("app:latest",)}
    assert images.resolve(paths, old.id[:10]).name == old.short_id  # containers can still find it
    assert images.remove(paths, old.id) == [f"Deleted: sha256:{old.id}"]
    assert [i.id for i in images.list_images(paths)] == [new.id]


def test_a_hostile_or_broken_tarball_is_refused_and_leaves_no_blob(paths: Paths, tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as t:
        info = tarfile.TarInfo("../../etc/cron.d/evil")
        t.addfile(info, io.BytesIO(b""))
    with pytest.raises(SdctrError, match=r"image evil:latest: layer sha256:[0-9a-f]{64}: entry '../../etc"):
        images.import_tarball(paths, str(evil), "evil")
    (tmp_path / "junk").write_bytes(b"not a tar" * 100)
    with pytest.raises(SdctrError, match="not a tar archive"):
        images.import_tarball(paths, str(tmp_path / "junk"), "junk")
    with pytest.raises(SdctrError, match="cannot read"):
        images.import_tarball(paths, str(tmp_path / "missing.tar"), "missing")
    assert blob_files(paths.root) == set()
    assert images.list_images(paths) == []


def test_concurrent_unpacks_of_one_layer_leave_one_copy(paths: Paths, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    image = images.import_tarball(paths, str(rootfs_tar(tmp_path)[0]), "busybox")
    driver = storage.OverlaySnapshotter(paths)
    final = driver.layer_dir(image.layers[0])
    from sdctr.oci import layers

    real_apply = layers.apply_layer

    def racing_apply(stream: layers.Readable, target: Path, **kw: str) -> object:
        # another process finishes the same layer while we are still unpacking ours
        final.mkdir(parents=True)
        (final / "winner").write_text("first\n")
        return real_apply(stream, target, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(layers, "apply_layer", racing_apply)
    driver.unpack(image)
    assert sorted(p.name for p in final.iterdir()) == ["winner"]  # the winner's copy, untouched
    assert [p.name for p in final.parent.iterdir()] == [final.name]  # ours discarded

    monkeypatch.setattr(layers, "apply_layer", real_apply)
    threads = [threading.Thread(target=driver.unpack, args=(image,)) for _ in range(4)]
    for p in final.parent.iterdir():
        shutil.rmtree(p)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.name for p in final.parent.iterdir()] == [final.name]
    assert (final / "etc/motd").read_text() == "hello\n"


def test_a_corrupt_layer_blob_is_not_unpacked(paths: Paths, tmp_path: Path) -> None:
    tarball, _ = rootfs_tar(tmp_path, compress=False)
    image = images.import_tarball(paths, str(tarball), "busybox")
    blob = paths.blob(image.layer_blobs[0])
    data = bytearray(blob.read_bytes())
    data[data.index(b"hello\n")] = ord("j")  # same length, different content
    blob.write_bytes(bytes(data))
    with pytest.raises(SdctrError, match=r"unpacks to sha256:.*but the image says"):
        storage.OverlaySnapshotter(paths).unpack(image)
    assert list((paths.root / "overlay/layers").iterdir()) == []


# Docker Hub's busybox config as `docker save` and registries serve it (shortened, shape kept):
# nulls where nothing is set, the legacy container_config, and a history with empty layers
DOCKER_CONFIG = {
    "architecture": "amd64", "os": "linux", "created": "2024-09-26T21:31:42Z", "docker_version": "23.0.11",
    "config": {"Hostname": "", "User": "", "AttachStdin": False, "ExposedPorts": {"80/tcp": {}},
               "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"],
               "Image": "sha256:" + "1" * 64, "Volumes": None, "WorkingDir": "", "Entrypoint": None,
               "OnBuild": None, "Labels": None},
    "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ", "CMD [\"sh\"]"], "Labels": {}},
    "history": [{"created": "2024-09-26T21:31:42Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
                {"created": "2024-09-26T21:31:42Z", "created_by": "/bin/sh -c #(nop)  CMD [\"sh\"]",
                 "empty_layer": True}],
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "2" * 64]},
}
OCI_MANIFEST = {
    "schemaVersion": 2, "mediaType": images.MEDIA_MANIFEST,
    "config": {"mediaType": images.MEDIA_CONFIG, "digest": "sha256:" + "3" * 64, "size": 581},
    "layers": [{"mediaType": images.MEDIA_LAYER + "+gzip", "digest": "sha256:" + "4" * 64, "size": 2160,
                "annotations": {"org.opencontainers.image.title": "layer.tar.gz"}}],
    "annotations": {"org.opencontainers.image.created": "2024-09-26T21:31:42Z"},
}


def test_real_documents_are_images() -> None:
    assert images.manifest_problem(OCI_MANIFEST) is None
    assert images.config_problem(DOCKER_CONFIG, 1) is None
    assert images.config_problem({"rootfs": {"diff_ids": []}}, 0) is None  # the least there is


@pytest.mark.parametrize(("config", "problem"), [
    ({**DOCKER_CONFIG, "config": {"Env": "PATH=/bin"}}, "config.Env is not a list of strings"),
    ({**DOCKER_CONFIG, "config": {"Cmd": [["sh"]]}}, "config.Cmd is not a list of strings"),
    ({**DOCKER_CONFIG, "config": {"Labels": {"a": 1}}}, "config.Labels is not an object of strings"),
    ({**DOCKER_CONFIG, "rootfs": None}, "rootfs is not an object"),
    ({**DOCKER_CONFIG, "history": [{"created_by": ["x"]}]},
     "history is not a list of objects with string fields"),
    ({**DOCKER_CONFIG, "os": 7}, "os is not a string"),
    ("{}", "not a JSON object"),
])
def test_documents_the_store_cannot_read_are_named(config: object, problem: str) -> None:
    assert images.config_problem(config, 1) == problem


def test_a_pull_refuses_what_the_store_cannot_read() -> None:
    """The checks load uses guard pulls as well: a registry's config is as foreign as an archive's."""
    from sdctr.image import registry

    bad = json.dumps({**DOCKER_CONFIG, "config": {"Env": "PATH=/bin"}}).encode()
    with pytest.raises(SdctrError, match=r"the image config is not one sdctr can store: config\.Env "):
        registry._parse_config("busybox", bad, 1)
    with pytest.raises(SdctrError, match="busybox: the image config is not JSON"):
        registry._parse_config("busybox", b"[" * 100_000, 1)
    layer = {**OCI_MANIFEST["layers"][0], "annotations": {images.UNPACKED_SIZE: "many"}}  # type: ignore[index]
    manifest = json.dumps({**OCI_MANIFEST, "layers": [layer]}).encode()
    with pytest.raises(SdctrError, match=r"busybox: the image manifest is not one sdctr can store: layers"):
        registry._parse_image_manifest("busybox", manifest)


def test_temporary_blobs_of_dead_writers_are_swept_live_ones_kept(paths: Paths) -> None:
    """A writer killed by SIGKILL leaves its temporary blob, and its lock on it with it: whatever
    its age, the temp is nobody's then; one whose writer holds its lock stays."""
    import fcntl

    d = paths.root / "blobs/sha256"
    d.mkdir(parents=True)
    dead, live = d / ".tmp-dead", d / ".tmp-live"
    dead.write_bytes(b"x")
    live.write_bytes(b"y")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        images.discard_unused(paths, [])
        assert not dead.exists() and live.exists()
