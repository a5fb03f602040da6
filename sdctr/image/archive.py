"""Images and container file systems as tar archives: `load`, `save`, `export`.

    load    `docker save` archives (manifest.json; layers as <id>/layer.tar or blobs/sha256/<hex>)
            and OCI archives (oci-layout, index.json, blobs/sha256/<hex>); plain, gzip or zstd
    save    both in one archive, as Docker 25 writes it: blobs/sha256/<hex> with uncompressed layers
            (every reader takes those), index.json + oci-layout for OCI tools, manifest.json +
            repositories for `docker load` of any version
    export  a container's file system: its writable layer over the image's, whiteouts applied

An archive is read once, as a stream: each file goes straight into the content store (an OCI
blob against the digest its name claims), the four small documents stay in memory. Nothing in it is
ever written by its own name, so a hostile name cannot reach outside the store; such names are
still refused, so that a bad archive says so. Every image's manifest and config is checked before
the first becomes an image; whatever a failed load stored and no image uses is deleted again.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import shlex
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from sdctr.image import store as images
from sdctr.log import SdctrError
from sdctr.oci.digest import digest_hex, is_digest
from sdctr.oci.layers import compression
from sdctr.paths import Paths

if TYPE_CHECKING:
    from sdctr.storage.snapshotter import Mount

MAX_DOCUMENT = images.MAX_DOCUMENT  # manifest.json, index.json: a few KiB in honest archives
MAX_ENTRIES = 100_000
DOCUMENTS = ("manifest.json", "index.json", "oci-layout", "repositories")
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
_BLOB_NAME = re.compile(r"blobs/sha256/([0-9a-f]{64})")
_NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")
_OUTPUT_TMP = ".sdctr-tmp-"  # .NAME.sdctr-tmp-*: an -o file being written, where O_TMPFILE is not


# --- load ------------------------------------------------------------------------------------------

class _Archive:
    """What a read archive holds: file name -> blob digest (links resolved), and the documents."""

    def __init__(self, label: str):
        self.label = label
        self.blobs: dict[str, str] = {}
        self.links: dict[str, str] = {}
        self.documents: dict[str, bytes] = {}

    def error(self, what: str, entry: str | None = None) -> SdctrError:
        where = f"{self.label}: entry {entry!r}: " if entry is not None else f"{self.label}: "
        return SdctrError(where + what, hint="nothing from this archive was kept")

    def blob(self, name: str) -> str:
        """The digest of the file ``name`` (as manifest.json spells it), following links."""
        seen = set()
        name = self.normal(name, name)
        while name in self.links and name not in seen:
            seen.add(name)
            name = self.links[name]
        if name not in self.blobs:
            raise self.error("is named by the manifest but is not in the archive", name)
        return self.blobs[name]

    def document(self, name: str, *, array: bool = False) -> Any:
        return self.parse(self.documents[name], name, array=array)

    def json_blob(self, paths: Paths, digest: str, entry: str) -> Any:
        """A manifest, index or config, of which no more than a document's size is read."""
        with open(paths.blob(digest), "rb") as f:
            return self.parse(f.read(MAX_DOCUMENT + 1), entry)

    def parse(self, data: bytes, entry: str, *, array: bool = False) -> Any:
        try:
            # "<archive>: entry 'x': is not JSON", as this archive's other errors read
            return images.parse_document(data, f"entry {entry!r}:", array=array)
        except SdctrError as e:
            raise self.error(str(e)) from None

    def check(self, problem: str | None, entry: str) -> None:
        if problem:
            raise self.error(problem, entry)

    def normal(self, name: str, entry: str) -> str:
        if "\0" in name or name.startswith("/"):
            raise self.error("absolute names have no place in an image archive", entry)
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.error("the name goes up a directory ('..')", entry)
        return "/".join(parts)


def load(paths: Paths, source: str | None) -> list[str]:
    """`docker load`: every image of the archive (a path, or stdin for None) into the store.
    Returns Docker's lines: "Loaded image: NAME:TAG", or "Loaded image ID: sha256:<id>"."""
    label = source or "stdin"
    written: list[str] = []
    try:
        with _open_input(source) as stream:
            archive = _read(paths, stream, label, written)
        if "manifest.json" in archive.documents:
            found = _docker_images(paths, archive, written)
        elif "index.json" in archive.documents:
            found = _oci_images(paths, archive)
        else:
            raise archive.error("neither a `docker save` archive (manifest.json) nor an OCI archive "
                                "(index.json)")
        # all of them checked first: a bad image anywhere in the archive leaves no image behind
        lines = [line for manifest_digest, keys in found for line in _add(paths, manifest_digest, keys)]
    except BaseException:
        images.discard_unused(paths, written)
        raise
    images.discard_unused(paths, written)  # Docker's legacy <id>/json and VERSION files
    return lines


@contextlib.contextmanager
def _open_input(source: str | None) -> Iterator[IO[bytes]]:
    if source is None:
        if sys.stdin.isatty():
            raise SdctrError("no archive given and stdin is a terminal", hint="sdctr load -i FILE")
        yield sys.stdin.buffer
        return
    try:
        f = open(source, "rb")
    except OSError as e:
        raise SdctrError(f"cannot read {source}: {e.strerror}") from None
    with f:
        yield f


def _read(paths: Paths, stream: IO[bytes], label: str, written: list[str]) -> _Archive:
    """One pass over the archive (plain, gzip or zstd), through the reader the layers use: no
    single read above its bound, so a header claiming gigabytes is refused, not buffered; the
    headers of all entries within one budget; no entry kept once the next is read."""
    from sdctr.oci.layers import ForwardReader, Refused, decompressed, open_tar

    archive = _Archive(label)
    try:
        with decompressed(stream) as plain:
            try:
                tar = open_tar(ForwardReader(plain))
            except tarfile.TarError as e:
                raise archive.error(f"not a tar archive ({e})") from None
            with tar:
                for count, member in enumerate(tar, 1):
                    if count > MAX_ENTRIES:
                        raise archive.error(f"more than {MAX_ENTRIES} entries: not an image archive")
                    _take(paths, archive, tar, member, written)
    except Refused as e:
        raise archive.error(str(e)) from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise archive.error(f"unreadable ({e})") from None
    return archive


def _take(paths: Paths, archive: _Archive, tar: tarfile.TarFile, m: tarfile.TarInfo,
          written: list[str]) -> None:
    name = archive.normal(m.name, m.name)
    if m.isdir():
        return
    if m.issym() or m.islnk():  # old `docker save` links a layer shared by two images
        target = posixpath.normpath(posixpath.join(posixpath.dirname(name), m.linkname)) if m.issym() \
            else m.linkname
        archive.links[name] = archive.normal(target, m.name)
        return
    if not m.isreg():
        raise archive.error("is neither a file, a directory nor a link", m.name)
    f = tar.extractfile(m)
    assert f is not None
    if name in DOCUMENTS:
        if m.size > MAX_DOCUMENT:
            raise archive.error(f"is {m.size} bytes, more than {MAX_DOCUMENT} for a document", m.name)
        archive.documents[name] = f.read()
        return
    claimed = _BLOB_NAME.fullmatch(name)
    if not (claimed or name.endswith((".tar", ".json"))):  # Docker's legacy <id>/json, VERSION
        return
    expect = f"sha256:{claimed.group(1)}" if claimed else None
    try:
        digest, _ = images.write_blob(paths, images.chunks_of(f), expect=expect, origin=archive.label)
    except SdctrError as e:
        raise archive.error(f"{e} (its name is its digest)", m.name) from None
    written.append(digest)
    archive.blobs[name] = digest


def _docker_images(paths: Paths, archive: _Archive, written: list[str]) -> list[tuple[str, list[str]]]:
    """manifest.json's images, each with an OCI manifest made for it: (manifest digest, tags)."""
    entries = archive.document("manifest.json", array=True)
    if not all(isinstance(e, dict) for e in entries):
        raise archive.error("manifest.json is not a list of images", "manifest.json")
    found = []
    for entry in entries:
        config_name, layer_names = entry.get("Config"), entry.get("Layers")
        if not (isinstance(config_name, str) and _is_strings(layer_names)):
            raise archive.error("an image there lacks Config or Layers", "manifest.json")
        config_digest = archive.blob(config_name)
        config = archive.json_blob(paths, config_digest, config_name)
        archive.check(images.config_problem(config, len(layer_names)), config_name)
        layers = [_layer(paths, archive, name, diff_id)
                  for name, diff_id in zip(layer_names, config["rootfs"]["diff_ids"])]
        manifest = images.manifest_bytes(config_digest, paths.blob(config_digest).stat().st_size,
                                         layers)
        written.append(images.write_blob_bytes(paths, manifest))
        found.append((written[-1], _tags(archive, entry.get("RepoTags"), "manifest.json")))
    return found


def _layer(paths: Paths, archive: _Archive, name: str, diff_id: str) -> dict[str, Any]:
    """The OCI descriptor of a docker-save layer file."""
    blob = archive.blob(name)
    with open(paths.blob(blob), "rb") as f:
        kind = compression(f.read(4))
    if not kind and blob != diff_id:  # a compressed one is checked when unpacked
        raise archive.error(f"the layer's digest is {blob}, the image config says {diff_id}", name)
    return images.layer_descriptor(blob, paths.blob(blob).stat().st_size, kind)


def _tags(archive: _Archive, names: Any, entry: str) -> list[str]:
    """The names an image is given in the archive's ``entry`` as the store's keys ("busybox:latest")."""
    if names is None:
        return []
    if not _is_strings(names):
        raise archive.error("RepoTags is not a list of names", entry)
    try:
        return [images.tag_reference(t).key for t in names]
    except SdctrError as e:
        raise archive.error(str(e), entry) from None


def _oci_images(paths: Paths, archive: _Archive) -> list[tuple[str, list[str]]]:
    """index.json's images: (manifest digest, tags), every blob checked to be at hand."""
    index = archive.document("index.json")
    descriptors = index.get("manifests")
    if not isinstance(descriptors, list):
        raise archive.error("index.json has no manifests", "index.json")
    found = []
    for desc in descriptors:
        if not isinstance(desc, dict) or not is_digest(desc.get("digest")):
            raise archive.error("a manifest there has no sha256 digest", "index.json")
        _sized(paths, archive, desc, "index.json")
        digest, manifest = _image_manifest(paths, archive, desc["digest"])
        config_digest = manifest["config"]["digest"]
        for blob_desc in (manifest["config"], *manifest["layers"]):
            if not paths.blob(blob_desc["digest"]).exists():
                raise archive.error(f"blob {blob_desc['digest']} of manifest {digest} is not in the archive")
            _sized(paths, archive, blob_desc, _blob_name(digest))
        config_entry = _blob_name(config_digest)
        config = archive.json_blob(paths, config_digest, config_entry)
        archive.check(images.config_problem(config, len(manifest["layers"])), config_entry)
        found.append((digest, _tags(archive, _names(desc.get("annotations")), "index.json")))
    return found


def _image_manifest(paths: Paths, archive: _Archive, digest: str) -> tuple[str, dict[str, Any]]:
    """The image manifest a descriptor leads to, checked; through an index, the one for this host."""
    wanted = ("linux", images.host_architecture())
    for _ in range(4):
        entry = _blob_name(digest)
        if entry not in archive.blobs:
            raise archive.error(f"manifest {digest} is not in the archive")
        doc = archive.json_blob(paths, digest, entry)
        if not (doc.get("mediaType") == MEDIA_INDEX or "manifests" in doc):
            archive.check(images.manifest_problem(doc), entry)
            return digest, doc
        children = doc.get("manifests")
        if not (isinstance(children, list) and all(isinstance(m, dict) for m in children)):
            raise archive.error("the index's manifests are not a list of descriptors", entry)
        matches = [m for m in children if _platform(m) == wanted]
        if not matches or not is_digest(matches[0].get("digest")):
            raise archive.error(f"the index has no image for {'/'.join(wanted)}", entry)
        digest = matches[0]["digest"]
        _sized(paths, archive, matches[0], entry)
    raise archive.error("indexes nested deeper than 4")


def _sized(paths: Paths, archive: _Archive, desc: Mapping[str, Any], entry: str) -> None:
    """A descriptor gives its blob's size, as OCI requires (a registry would stream the blob by
    it), and here it is the size of the blob the archive holds."""
    size, digest = desc.get("size"), desc["digest"]
    if type(size) is not int or size < 0:
        raise archive.error(f"the descriptor of {digest} gives no size (an OCI descriptor must)", entry)
    with contextlib.suppress(FileNotFoundError):  # a missing blob is refused as such
        actual = paths.blob(digest).stat().st_size
        if actual != size:
            raise archive.error(f"the descriptor of {digest} says {size} bytes; the blob has {actual}",
                                entry)


def _platform(descriptor: Mapping[str, Any]) -> tuple[Any, Any]:
    platform = descriptor.get("platform")
    return (platform.get("os"), platform.get("architecture")) if isinstance(platform, dict) else (None, None)


def _is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def _blob_name(digest: str) -> str:
    return f"blobs/sha256/{digest_hex(digest)}"


def _names(annotations: Any) -> list[str]:
    """The image's name from the index annotations: containerd's full name, else the OCI ref
    name when it is a name (skopeo writes "busybox:1"), not a bare tag such as "latest"."""
    for key in _NAME_ANNOTATIONS:
        value = annotations.get(key) if isinstance(annotations, dict) else None
        if isinstance(value, str) and (":" in value or "/" in value):
            return [value]
    return []


def _add(paths: Paths, manifest_digest: str, keys: Sequence[str]) -> list[str]:
    """Makes a checked manifest an image, under each of ``keys`` or untagged: Docker's lines."""
    for key in keys:
        images.add_manifest(paths, manifest_digest, key)
    if keys:
        return [f"Loaded image: {k}" for k in keys]
    images.add_manifest(paths, manifest_digest, None)
    config = images.read_json_blob(paths, manifest_digest)["config"]["digest"]
    return [f"Loaded image ID: {config}"]


# --- save ------------------------------------------------------------------------------------------

def save(paths: Paths, refs: Sequence[str], output: str | None) -> None:
    """`docker save`: the images (with the tags the references name) as one archive, to the file
    ``output`` (written aside and renamed when complete) or to stdout."""
    sweep_old_save_temps(paths)
    chosen: dict[str, tuple[images.Image, list[str]]] = {}
    for ref in refs:
        for image, key in _named(paths, ref):  # by manifest: two may share one config (id)
            tags = chosen.setdefault(image.manifest_digest, (image, []))[1]
            if key and key not in tags:
                tags.append(key)
    if output is None:
        if sys.stdout.isatty():
            raise SdctrError("refusing to write an image archive to a terminal",
                             hint="use -o FILE or redirect stdout")
        sys.stdout.flush()
        _write_archive(paths, list(chosen.values()), sys.stdout.buffer)
        return
    with _output_file(output) as f:
        _write_archive(paths, list(chosen.values()), f)


def old_save_temps(paths: Paths) -> list[Path]:
    """<root>/tmp/save-*: the decompressed layers of a save killed before these files lost
    their names (an older sdctr's); deleted by the next save or `system check --repair`."""
    d = paths.root / "tmp"
    return sorted(d.glob("save-*")) if d.is_dir() else []


def sweep_old_save_temps(paths: Paths) -> None:
    for tmp in old_save_temps(paths):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _named(paths: Paths, ref: str) -> list[tuple[images.Image, str | None]]:
    """The images `docker save REF` writes, each with the tag it goes by: a bare repository name
    means every tag of it (`docker save fedora > fedora-all.tar`), a name with a tag that tag, an
    id the image untagged."""
    try:
        r: images.Reference | None = images.parse_reference(ref)
    except SdctrError:
        r = None  # an id prefix that is no name
    if r is not None and r.tag is None and r.digest is None:
        repository = r.key.rpartition(":")[0]
        tagged: list[tuple[images.Image, str | None]] = [
            (image, key) for image in images.list_images(paths) for key in image.repo_tags
            if key.rpartition(":")[0] == repository]
        if tagged:
            return tagged
    image = images.resolve(paths, ref)
    return [(image, r.key if r is not None and not r.digest and r.key in image.repo_tags else None)]


@contextlib.contextmanager
def _output_file(output: str) -> Iterator[BinaryIO]:
    """The file ``output``, written aside and renamed into place once complete: a failure halfway
    leaves no half archive that looks whole, and a writer killed (SIGKILL) leaves nothing. The
    file is made without a name (O_TMPFILE) and named once complete; where the file system cannot
    (overlayfs before Linux 6.6), it is a temp file that its writer locks while it lives, deleted
    by the next -o into that directory once the lock is free (DESIGN.md, invariant 4)."""
    import errno
    import fcntl

    target = Path(output)
    if target.is_dir():
        raise SdctrError(f"cannot write {output}: it is a directory", hint="name a file with -o")
    parent, prefix = target.parent, f".{target.name}{_OUTPUT_TMP}"
    _sweep_dead_outputs(parent)
    named: str | None = None
    try:
        try:
            fd = os.open(parent, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
            fd, named = tempfile.mkstemp(dir=parent, prefix=prefix)
        # the lock is the inode's: it covers the name the file gets below too
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as e:
        raise SdctrError(f"cannot write {output}: {e.strerror}") from None
    try:
        # by a path, so that a child process (export's tar) can write to it as well
        with open(f"/proc/{os.getpid()}/fd/{fd}", "wb") as f:
            yield f
        os.fchmod(fd, 0o644)
        if named is None:
            named = f"{parent}/{prefix}{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(named)  # ours, from a reused pid: its writer is dead
            # linkat(AT_SYMLINK_FOLLOW), which Python calls only when given a directory fd
            dirfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.link(f"/proc/self/fd/{fd}", Path(named).name, dst_dir_fd=dirfd, follow_symlinks=True)
            finally:
                os.close(dirfd)
        try:
            os.rename(named, target)
        except OSError as e:
            raise SdctrError(f"cannot write {output}: {e.strerror}") from None
    except BaseException:
        if named is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(named)
        raise
    finally:
        os.close(fd)


def _sweep_dead_outputs(directory: Path) -> None:
    """Deletes the -o temp files in ``directory`` whose writer is dead (its lock is free)."""
    from sdctr.state import remove_unless_locked

    for tmp in directory.glob(f".*{_OUTPUT_TMP}*"):
        remove_unless_locked(tmp)


def _write_archive(paths: Paths, chosen: Sequence[tuple[images.Image, list[str]]], out: BinaryIO) -> None:
    index: list[dict[str, Any]] = []
    docker_manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    added: set[str] = set()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        def add_blob(name: str, f: BinaryIO) -> None:
            if name not in added:
                added.add(name)
                tar.addfile(_file_info(name, os.fstat(f.fileno()).st_size), f)

        for image, tags in chosen:
            with open(paths.blob(f"sha256:{image.id}"), "rb") as config:
                add_blob(f"blobs/sha256/{image.id}", config)
            layers = []
            for blob, diff_id in zip(image.layer_blobs, image.layers):
                name = f"blobs/sha256/{digest_hex(diff_id)}"
                with _uncompressed(paths, image, blob, diff_id) as layer:
                    add_blob(name, layer)
                    layers.append(images.layer_descriptor(diff_id, os.fstat(layer.fileno()).st_size))
            config_size = paths.blob(f"sha256:{image.id}").stat().st_size
            manifest = images.manifest_bytes(f"sha256:{image.id}", config_size, layers)
            manifest_digest = images.sha256_digest(manifest)
            _add_bytes(tar, f"blobs/sha256/{digest_hex(manifest_digest)}", manifest)
            descriptor = {"mediaType": images.MEDIA_MANIFEST, "digest": manifest_digest,
                          "size": len(manifest)}
            index += [{**descriptor, "annotations": _name_annotations(key)} for key in tags] or [descriptor]
            # full names, as skopeo writes them: podman loads a short name of an image with several
            # tags as localhost/NAME; docker normalises either form to the same name
            docker_manifest.append({"Config": f"blobs/sha256/{image.id}",
                                    "RepoTags": [_full_name(key) for key in tags] or None,
                                    "Layers": [f"blobs/sha256/{digest_hex(d)}" for d in image.layers]})
            for key in tags:
                repo, _, tag = key.rpartition(":")
                repositories.setdefault(repo, {})[tag] = digest_hex(image.layers[-1]) if image.layers else ""
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add_bytes(tar, "index.json", images.canonical({"schemaVersion": 2, "mediaType": MEDIA_INDEX,
                                                        "manifests": index}))
        _add_bytes(tar, "manifest.json", json.dumps(docker_manifest).encode())
        _add_bytes(tar, "repositories", json.dumps(repositories).encode())


@contextlib.contextmanager
def _uncompressed(paths: Paths, image: images.Image, blob: str, diff_id: str) -> Iterator[BinaryIO]:
    """The layer as a plain tar, open: the blob itself, or a copy decompressed (and checked
    against the diff id) into a file without a name in the store's own tmp directory, which goes
    with its writer, killed or not."""
    from sdctr.oci.layers import Refused, decompressed

    with open(paths.blob(blob), "rb") as f:
        if not compression(f.read(4)):
            f.seek(0)
            yield f
            return
        f.seek(0)
        tmp_dir = paths.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        # O_TMPFILE; where the file system cannot, a name unlinked at once
        with tempfile.TemporaryFile(dir=tmp_dir, prefix=".tmp-save-") as out:
            try:
                with decompressed(f) as plain:
                    digest = images.copy_hashing(plain, out)
            except (EOFError, zlib.error, Refused) as e:
                raise SdctrError(f"image {image.name}: layer {blob} does not decompress ({e})",
                                 hint="the blob is corrupt; remove the image and pull it again") from None
            if digest != diff_id:
                raise SdctrError(f"image {image.name}: layer {blob} unpacks to {digest}, but the image "
                                 f"says {diff_id}",
                                 hint="the blob is corrupt; remove the image and pull it again")
            out.flush()
            out.seek(0)
            yield out


def _name_annotations(key: str) -> dict[str, str]:
    """containerd's full name, and the tag alone as the OCI layout spec has ref.name."""
    return {"io.containerd.image.name": _full_name(key),
            "org.opencontainers.image.ref.name": images.parse_reference(key).tag or "latest"}


def _full_name(key: str) -> str:
    """"busybox:latest" as "docker.io/library/busybox:latest"."""
    r = images.parse_reference(key)
    return f"{r.domain}/{r.path}:{r.tag or 'latest'}"


def _file_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    tar.addfile(_file_info(name, len(data)), io.BytesIO(data))


# --- export ----------------------------------------------------------------------------------------

def export(paths: Paths, cid: str, image: images.Image, output: str | None) -> None:
    """`docker export`: the container's file system as a tar. A running container's mounted root
    is read as it is; a stopped one's through its driver's read-only view, mounted by tar's own
    mount namespace at the container's mount point (unused while it is stopped): the mount lives
    as long as tar, and a kill (SIGKILL) of sdctr or tar at any moment leaves neither a mount nor
    a directory behind (issue 17; it was a mount below <run>/export until unmounted by hand)."""
    from sdctr.storage import drivers
    from sdctr.storage.mountinfo import mounts_at

    if output is None and sys.stdout.isatty():
        raise SdctrError("refusing to write a tar archive to a terminal",
                         hint="use -o FILE or redirect stdout")
    rootfs = paths.rootfs(cid)
    if mounts_at(rootfs):
        _tar_tree(rootfs, output)
        return
    snap = drivers.driver(_driver_name(paths, cid), paths)
    snap.unpack(image)  # the image's layers were unpacked by create; a copy pruned since is redone
    rootfs.mkdir(parents=True, exist_ok=True)  # (made at create; a reboot empties the run directory)
    try:
        _tar_tree(rootfs, output, view=snap.view(cid, image.layers, rootfs))
    finally:  # the view's mount went with tar's namespace; a thin device it activated goes now
        snap.release(cid)


def _driver_name(paths: Paths, cid: str) -> str:
    """The storage driver the container's record names (its layer chain is its image's: the image
    id is the digest of a config that lists the diff ids)."""
    from sdctr.state import NoSuchContainer, find_by_id
    from sdctr.storage.drivers import DEFAULT, LEGACY

    try:
        return find_by_id(paths, cid).storage or LEGACY
    except NoSuchContainer:
        return DEFAULT


def _tar_tree(root: Path, output: str | None, view: Mount | None = None) -> None:
    """tar of ``root`` to ``output`` (stdout if None); with ``view``, mounted there first in a
    mount namespace of tar's own (a slave of the host's, so that nothing goes back)."""
    from sdctr.external import run

    def tar(archive: str) -> None:
        argv = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", str(root), "-cf", archive]
        if view is None:
            argv += ["--", *sorted(os.listdir(root))]
        else:  # the names at the top, as above, once the view is there to list
            script = (f"{shlex.join(view.argv())} && cd {shlex.quote(str(root))} && find . -mindepth 1 "
                      "-maxdepth 1 -printf '%P\\0' | LC_ALL=C sort -z | \"$@\" --null -T -")
            argv = ["unshare", "--mount", "--propagation", "slave", "--", "/bin/sh", "-c", script, "sh",
                    *argv]
        status = run(argv, capture=False, check=False).returncode
        # a running container changes files while tar reads them: GNU tar warns, finishes the
        # archive and exits 1 ("some files differ"), a complete export as `docker export` gives
        if status not in (0, 1):
            raise SdctrError(f"tar could not archive {root} (exit status {status})")

    sys.stdout.flush()
    if output is None:
        tar("-")
        return
    with _output_file(output) as f:
        tar(f.name)
