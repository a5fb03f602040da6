"""sdctr.registry against a real registry (Debian's docker-registry) in a network namespace of our
own: OCI and Docker schema 2 images, a multi-platform index, htpasswd auth, a registry that is down,
and blobs corrupted in the registry's storage (nothing partial may stay in our store)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.layout import Variant, busybox_layer, small_layer, tar_files
from helpers.registries import AUTHED, PASSWORD, PLAIN, PLAIN_PORT, USER, Registries, registries_with_layout
from helpers.store import blob_files

from sdctr.image import registry
from sdctr.image import store as images
from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.storage import overlay as storage

pytestmark = pytest.mark.host

HOST_ARCH = images.host_architecture()
OTHER_ARCH = "arm64" if HOST_ARCH != "arm64" else "amd64"
CMD = ("/bin/sh", "-c", "echo hello")
ENV = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hi")


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registries]:
    work = tmp_path_factory.mktemp("registry")
    with registries_with_layout(work) as (r, layout):
        base = busybox_layer(work)
        layout.add("plain", [Variant(HOST_ARCH, ENV, CMD, (base, small_layer("hello", b"oci\n")))])
        layout.add("multi", [Variant(HOST_ARCH, ("WHO=host",), ("/bin/true",),
                                     (small_layer("arch", b"host\n"),)),
                             Variant(OTHER_ARCH, ("WHO=other",), ("/bin/false",),
                                     (small_layer("arch", b"other\n"),))])
        layout.add("bad", [Variant(HOST_ARCH, ENV, CMD, (small_layer("bad", b"x" * 5000),))])
        layout.add("short", [Variant(HOST_ARCH, ENV, CMD, (small_layer("short", b"y" * 5000),))])
        r.push(layout.root, "plain", f"{PLAIN}/test/oci:1")
        r.push(layout.root, "plain", f"{PLAIN}/test/docker:1", fmt="v2s2")
        r.push(layout.root, "multi", f"{PLAIN}/test/multi:1", all_=True)
        r.push(layout.root, "bad", f"{PLAIN}/test/bad:1")
        r.push(layout.root, "short", f"{PLAIN}/test/short:1")
        hostile = tar_files({"etc/ok": b"fine\n", "../../../escaped-by-a-layer": b"gotcha\n"})
        layout.add("hostile", [Variant(HOST_ARCH, ENV, CMD, (hostile,))])
        r.push(layout.root, "hostile", f"{PLAIN}/test/hostile:1")
        r.push(layout.root, "plain", f"{AUTHED}/test/private:1", creds=f"{USER}:{PASSWORD}")
        yield r


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture(autouse=True)
def _no_machine_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """In-process pulls read sdctr.yaml: never the machine's."""
    monkeypatch.setenv("SDCTR_CONFIG", str(tmp_path / "absent.yaml"))


def _ok(result: dict[str, object]) -> dict[str, object]:
    assert result["ok"], result
    return result


def _fails(result: dict[str, object], *words: str) -> str:
    assert not result["ok"], result
    message = f"{result['error']} {result.get('hint') or ''}"
    for w in words:
        assert w in message, message
    return message


def _manifest(root: Path, image: images.Image) -> dict[str, object]:
    blob = root / "blobs/sha256" / image.manifest_digest.split(":")[1]
    loaded: dict[str, object] = json.loads(blob.read_text())
    return loaded


def test_pull_oci_image(reg: Registries, root: Path) -> None:
    result = _ok(reg.pull(root, f"{PLAIN}/test/oci:1"))
    image = images.resolve(Paths.from_root(str(root)), f"{PLAIN}/test/oci:1")
    assert image.id == result["id"]
    assert image.config.cmd == CMD and image.config.env == ENV and image.config.workdir == "/"
    assert len(image.layers) == len(image.layer_blobs) == 2
    assert image.architecture == HOST_ARCH
    assert _manifest(root, image)["mediaType"] == registry.MEDIA_OCI_MANIFEST
    # SIZE is what came over the wire until the layers are unpacked, then the unpacked content,
    # as Docker shows it (skopeo gzipped the layers on push; busybox compresses to about half)
    paths = Paths.from_root(str(root))
    blob_bytes = sum((root / "blobs/sha256" / b[7:]).stat().st_size for b in image.layer_blobs)
    assert image.size == blob_bytes
    images.record_unpacked(paths, storage.OverlaySnapshotter(paths).unpack(image))
    assert images.resolve(paths, image.id).size > 1.5 * blob_bytes
    for blob in (*image.layer_blobs, f"sha256:{image.id}", image.manifest_digest):
        assert blob.split(":")[1] in blob_files(root)
    lines = result["lines"]
    assert isinstance(lines, list)
    assert "1: Pulling from 127.0.0.1:5000/test/oci" in lines
    assert f"{image.layer_blobs[0][7:19]}: Pulling fs layer" in lines
    assert f"{image.layer_blobs[0][7:19]}: Download complete" in lines
    assert any(x.startswith("Digest: sha256:") for x in lines)
    assert lines[-1] == f"Status: Downloaded newer image for {PLAIN}/test/oci:1"

    # again: nothing fetched, and by the digest the registry gave (verified)
    again = _ok(reg.pull(root, f"{PLAIN}/test/oci:1"))
    assert again["lines"][-1] == f"Status: Image is up to date for {PLAIN}/test/oci:1"  # type: ignore[index]
    digest = next(x for x in lines if x.startswith("Digest: ")).split()[1]
    _ok(reg.pull(root, f"{PLAIN}/test/oci@{digest}"))
    assert images.resolve(Paths.from_root(str(root)), f"{PLAIN}/test/oci@{digest}").id == image.id


def test_pull_docker_schema2_image(reg: Registries, root: Path) -> None:
    result = _ok(reg.pull(root, f"{PLAIN}/test/docker:1"))
    image = images.resolve(Paths.from_root(str(root)), f"{PLAIN}/test/docker:1")
    assert image.id == result["id"]
    assert image.config.cmd == CMD and image.config.env == ENV
    assert len(image.layers) == 2
    assert _manifest(root, image)["mediaType"] == registry.MEDIA_DOCKER_MANIFEST


def test_a_hostile_layer_is_refused_when_first_unpacked(reg: Registries, root: Path, tmp_path: Path) -> None:
    """The pull verifies digests only; the tar rules apply once, at the first unpack (as for an
    imported image): one error naming image, layer and entry, and nothing written outside."""
    paths = Paths.from_root(str(root))
    result = _ok(reg.pull(root, f"{PLAIN}/test/hostile:1"))
    image = images.resolve(paths, str(result["id"]))
    before = {p: p.stat().st_mtime for p in root.parent.rglob("*") if not p.is_relative_to(root)}
    with pytest.raises(SdctrError) as e:
        storage.OverlaySnapshotter(paths).unpack(image)
    assert f"{PLAIN}/test/hostile:1" in str(e.value) and image.layer_blobs[0] in str(e.value)
    assert "escaped-by-a-layer" in str(e.value)
    assert not list(root.parent.parent.rglob("escaped-by-a-layer"))
    assert before == {p: p.stat().st_mtime for p in root.parent.rglob("*") if not p.is_relative_to(root)}
    assert list((root / "overlay/layers").iterdir()) == []  # no half-unpacked layer stays


def test_multi_platform_index(reg: Registries, root: Path) -> None:
    paths = Paths.from_root(str(root))
    _ok(reg.pull(root, f"{PLAIN}/test/multi:1"))
    host = images.resolve(paths, f"{PLAIN}/test/multi:1")
    assert host.architecture == HOST_ARCH and host.config.env == ("WHO=host",)
    _ok(reg.pull(root, f"{PLAIN}/test/multi:1", platform=f"linux/{OTHER_ARCH}"))
    other = images.resolve(paths, f"{PLAIN}/test/multi:1")
    assert other.architecture == OTHER_ARCH and other.config.env == ("WHO=other",)
    assert other.config.cmd == ("/bin/false",)
    assert other.id != host.id


def test_platform_missing_from_index(reg: Registries, root: Path) -> None:
    before = blob_files(root)
    _fails(reg.pull(root, f"{PLAIN}/test/multi:1", platform="linux/s390x"),
           "linux/s390x", f"linux/{HOST_ARCH}", f"linux/{OTHER_ARCH}")
    assert blob_files(root) == before


def test_unknown_tag(reg: Registries, root: Path) -> None:
    _fails(reg.pull(root, f"{PLAIN}/test/oci:nope"), "not found")


def test_auth_needs_credentials(reg: Registries, root: Path, tmp_path: Path) -> None:
    message = _fails(reg.pull(root, f"{AUTHED}/test/private:1",
                              env={"REGISTRY_AUTH_FILE": str(tmp_path / "none.json")}),
                     AUTHED, "sdctr login")
    assert "credentials" in message


def test_auth_wrong_credentials(reg: Registries, root: Path, tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {AUTHED: {"auth": _b64(f"{USER}:wrong")}}}))
    _fails(reg.pull(root, f"{AUTHED}/test/private:1", env={"REGISTRY_AUTH_FILE": str(auth)}),
           AUTHED, "refused")


def test_auth_with_auth_file(reg: Registries, root: Path) -> None:
    root.mkdir(parents=True)
    (root / "auth.json").write_text(json.dumps({"auths": {AUTHED: {"auth": _b64(f"{USER}:{PASSWORD}")}}}))
    _ok(reg.pull(root, f"{AUTHED}/test/private:1"))  # <root>/auth.json
    image = images.resolve(Paths.from_root(str(root)), f"{AUTHED}/test/private:1")
    assert image.config.cmd == CMD


def test_registry_down(reg: Registries, root: Path) -> None:
    _fails(reg.pull(root, "127.0.0.1:5999/test/oci:1"), "cannot reach registry 127.0.0.1:5999")
    assert blob_files(root) == set()


def _corrupt(reg: Registries, root: Path, name: str, how: str) -> str:
    """Pulls test/<name>:1 after damaging its layer in the registry's storage; the error message."""
    scratch = root.parent / f"scratch-{name}"
    _ok(reg.pull(scratch, f"{PLAIN}/test/{name}:1"))
    layer = images.resolve(Paths.from_root(str(scratch)), f"{PLAIN}/test/{name}:1").layer_blobs[0]
    data = reg.blob_file(PLAIN_PORT, layer)
    original = data.read_bytes()
    try:
        if how == "flip":
            data.write_bytes(original[:-10] + bytes(b ^ 0xFF for b in original[-10:]))
        else:
            data.write_bytes(original[: len(original) // 2])
        _ok(reg.pull(root, f"{PLAIN}/test/oci:1"))  # something already in the store
        before = blob_files(root)
        index_before = (root / "images.json").read_text()
        result = reg.pull(root, f"{PLAIN}/test/{name}:1")
        assert blob_files(root) == before
        assert not [p for p in (root / "blobs/sha256").iterdir() if p.name.startswith(".tmp")]
        assert (root / "images.json").read_text() == index_before
        return _fails(result, layer)
    finally:
        data.write_bytes(original)


def test_wrong_digest_served(reg: Registries, root: Path) -> None:
    assert "failed verification" in _corrupt(reg, root, "bad", "flip")


def test_truncated_blob(reg: Registries, root: Path) -> None:
    _corrupt(reg, root, "short", "truncate")


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def test_the_pull_command(reg: Registries, root: Path) -> None:
    """What a user types: `sdctr pull`, its progress lines, `sdctr images`, a clear failure."""
    pulled = reg.sdctr(root, "pull", f"{PLAIN}/test/oci:1")
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.splitlines()[-1] == f"Status: Downloaded newer image for {PLAIN}/test/oci:1"
    listing = reg.sdctr(root, "images")
    assert listing.returncode == 0, listing.stderr
    assert f"{PLAIN}/test/oci" in listing.stdout and " 1 " in listing.stdout
    r = reg.sdctr(root, "pull", f"{PLAIN}/test/oci:nope")
    assert r.returncode == 125
    assert r.stderr.startswith("sdctr: error: ") and "Traceback" not in r.stderr
