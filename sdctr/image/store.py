"""The local image store, laid out the OCI way so registry pulls can fill it later.

    <root>/blobs/sha256/<hex>   content-addressed: layer tarballs as given, config and manifest JSON
    <root>/images.json          {"repositories": {"busybox:latest": "sha256:<manifest digest>"},
                                 "dangling": ["sha256:<manifest digest>", ...],
                                 "unpacked": {"sha256:<layer blob>": <unpacked bytes>, ...}}

An image is its OCI manifest; its id is the digest of its config (as Docker shows it). Tags are
kept in the familiar short form ("busybox:latest", "quay.io/x/y:v1"). An image whose last tag moves
to another image stays, untagged, in "dangling" (Docker's <none>:<none>), because a container
made from it may still need it; `remove` by id deletes it. images.json changes under the state
lock and is replaced atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from sdctr import state
from sdctr.log import SdctrError, debug
from sdctr.oci.digest import digest_hex, is_digest
from sdctr.paths import Paths
from sdctr.record import Record
from sdctr.storage import drivers

TYPE_CHECKING = False  # typing costs ~3 ms to import, and run needs none of it
if TYPE_CHECKING:
    from typing import Any

    from sdctr.oci.layers import Readable

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
UNPACKED_SIZE = "io.sdctr.layer.unpacked-size"  # manifest annotation on layers we made
DEFAULT_DOMAIN = "docker.io"
_NO_IMAGE_HINT = "sdctr import ROOTFS.tar NAME or sdctr pull NAME"
MAX_DOCUMENT = 4 << 20  # as containerd: a manifest or config is small, a huge one is an attack


class NoSuchImage(SdctrError):
    """The store has no image by that name or id (`run` pulls it then)."""

# the OCI config "config" keys that `import --change` and ImageConfig carry
CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Labels", "StopSignal",
               "Volumes")


class ImageConfig(Record):
    """What the image asks of a container (the "config" section of the OCI image config)."""

    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()  # "80/tcp"
    labels: dict[str, str] = {}  # noqa: RUF012 (a record copies a dict default)
    # HEALTHCHECK: {"Test": [...], "Interval": ns, "Timeout": ns, "StartPeriod": ns, "Retries": n}
    healthcheck: dict[str, Any] = {}  # noqa: RUF012

    @classmethod
    def from_oci(cls, c: Mapping[str, Any] | None) -> ImageConfig:
        c = c or {}
        return cls(
            env=tuple(c.get("Env") or ()),
            cmd=tuple(c.get("Cmd") or ()),
            entrypoint=tuple(c.get("Entrypoint") or ()),
            workdir=c.get("WorkingDir") or "",
            user=c.get("User") or "",
            exposed_ports=tuple(sorted(c.get("ExposedPorts") or {})),
            labels=dict(c.get("Labels") or {}),
            healthcheck=dict(c.get("Healthcheck") or {}),
        )


class Image(Record):
    id: str  # hex of the config digest (64)
    repo_tags: tuple[str, ...]
    manifest_digest: str
    layers: tuple[str, ...]  # diff ids "sha256:<hex>", bottom first
    layer_blobs: tuple[str, ...]  # blob digests, same order
    config: ImageConfig
    created: str  # ISO 8601
    size: int  # bytes, unpacked
    architecture: str = ""
    os: str = "linux"

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def name(self) -> str:
        """How messages name the image: its first tag, or its short id."""
        return self.repo_tags[0] if self.repo_tags else self.short_id


# --- references ------------------------------------------------------------------------------------

class Reference(Record):
    domain: str
    path: str  # "library/busybox"
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """The familiar name Docker shows: "busybox", "me/app", "quay.io/x/y"."""
        if self.domain == DEFAULT_DOMAIN:
            official = self.path.startswith("library/") and self.path.count("/") == 1
            return self.path[len("library/"):] if official else self.path
        return f"{self.domain}/{self.path}"

    @property
    def key(self) -> str:
        """The images.json key: repository:tag, the tag defaulting to latest."""
        return f"{self.repository}:{self.tag or 'latest'}"


# docker/distribution reference grammar (reference/regexp.go)
_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = re.compile(rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_REF = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_HEX_ID = re.compile(r"(?:sha256:)?([0-9a-f]{3,64})")
_REF_HINT = "examples: busybox, busybox:1.36, registry.example.com/team/app:v2"


def parse_reference(ref: str) -> Reference:
    """NAME[:TAG][@DIGEST] as Docker reads it; refuses what Docker would refuse."""
    def bad(why: str = "") -> SdctrError:
        return SdctrError(f"invalid reference format {ref!r}{': ' + why if why else ''}", hint=_REF_HINT)

    name, _, digest = ref.partition("@")
    if digest and not _DIGEST_REF.fullmatch(digest):
        raise bad("the digest is not ALGORITHM:HEX")
    tag = None
    slash = name.rfind("/")
    if name.rfind(":") > slash:
        name, tag = name.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            raise bad("the tag may hold letters, digits, '_', '.', '-' (128 at most)")
    first, sep, remainder = name.partition("/")
    # the first component is a registry when it looks like a host name (docker's splitDockerDomain)
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        domain, path = first, remainder
        if not _DOMAIN.fullmatch(domain):
            raise bad(f"{domain!r} is not a registry host")
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if not name or len(name) > 255:
        raise bad("the repository name must have 1 to 255 characters")
    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            if _PATH_COMPONENT.fullmatch(component.lower()):
                raise bad("repository name must be lowercase")
            raise bad(f"{component!r}: name components are lowercase letters and digits, "
                      "separated by '.', '_', '__' or '-'")
    return Reference(domain, path, tag, digest or None)


def tag_reference(ref: str) -> Reference:
    """A reference that can name a new tag: no digest, not a 64-hex image id."""
    r = parse_reference(ref)
    if r.digest:
        raise SdctrError(f"{ref!r}: a tag cannot carry a digest", hint="give NAME[:TAG]")
    if re.fullmatch(r"[0-9a-f]{64}", r.repository):
        raise SdctrError(f"{ref!r}: a repository name cannot be a 64-character hex string (an image id)")
    return r


# --- blobs -----------------------------------------------------------------------------------------

def write_blob(paths: Paths, chunks: Iterable[bytes], *, expect: str | None = None,
               origin: str = "the source") -> tuple[str, int]:
    """Copies chunks into the content store: (digest, size). Temp file, fsync, rename. With
    ``expect``, content of another digest is deleted and refused, naming ``origin``."""
    d = paths.root / "blobs" / "sha256"
    d.mkdir(parents=True, exist_ok=True)
    import hashlib  # OpenSSL's: ~3 ms that `run` does without
    import tempfile  # with shutil, bz2 and lzma: ~3 ms more

    _write_lease(paths)
    fd, tmp = _locked_temp(d, tempfile.mkstemp)
    sha, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as f:
            for data in chunks:
                sha.update(data)
                f.write(data)
                size += len(data)
            digest = f"sha256:{sha.hexdigest()}"
            if expect and digest != expect:
                raise SdctrError(f"blob {expect} failed verification: {origin} sent content with the "
                                 f"digest {digest}", hint="nothing was stored")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, d / sha.hexdigest())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return digest, size


def _locked_temp(d: Path, mkstemp: Callable[..., tuple[int, str]]) -> tuple[int, str]:
    """A temp file in ``d`` that its writer holds a lock on while it lives: its lock free means its
    writer is dead, and the next command deletes it (sweep_dead_temps). One a sweep deleted before
    we locked it is made again."""
    import fcntl

    while True:
        fd, tmp = mkstemp(dir=d, prefix=".tmp-")
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:
            return fd, tmp
        os.close(fd)


def sweep_dead_temps(paths: Paths) -> list[str]:
    """Deletes the blob temp files whose writer is gone (a pull, load or import killed with
    SIGKILL): the writer holds a lock on each while it writes (DESIGN.md, invariant 4). The names
    deleted."""
    d = paths.root / "blobs" / "sha256"
    swept = [tmp.name for tmp in (d.glob(".tmp-*") if d.is_dir() else ()) if state.remove_unless_locked(tmp)]
    return swept


_leases: dict[str, int] = {}  # root -> the fd of our shared lock on <root>/.writers


def _write_lease(paths: Paths) -> None:
    """A shared lock on <root>/.writers, held by a command that writes blobs until it exits: the
    blobs it wrote are unreferenced until its image is made, and `image prune` (which takes the
    lock exclusively) leaves them alone meanwhile. The first blob of a command also sweeps what
    killed writers left."""
    import fcntl

    key = str(paths.root)
    if key in _leases:
        return
    fd = os.open(paths.root / ".writers", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _leases[key] = fd
    sweep_dead_temps(paths)


def _end_write_lease(paths: Paths) -> None:
    fd = _leases.pop(str(paths.root), None)
    if fd is not None:
        os.close(fd)


def collect_garbage(paths: Paths) -> int:
    """containerd's garbage collection, by reference: every blob no image's manifest reaches,
    every unpacked layer no image has, every temp file of a dead writer. Blobs are left alone while
    a pull, load or import runs (it holds <root>/.writers): its blobs have no image yet. The bytes
    of the blobs deleted."""
    import fcntl

    _end_write_lease(paths)  # ours, if this process wrote blobs: it writes no more
    sweep_dead_temps(paths)
    d = paths.root / "blobs" / "sha256"
    if not d.is_dir():
        return 0
    fd = os.open(paths.root / ".writers", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            debug("a pull, load or import runs: unreferenced blobs are kept")
            return 0
        with state.locked(paths):
            idx = _load_index(paths)
            present = [f"sha256:{p.name}" for p in d.iterdir() if is_digest(f"sha256:{p.name}")]
            return _collect_garbage_of(paths, idx, present)
    finally:
        os.close(fd)


def unreferenced_blobs(paths: Paths) -> list[tuple[str, int]]:
    """(digest, bytes) of every stored blob no image's manifest reaches: what collect_garbage
    deletes when no writer runs."""
    d = paths.root / "blobs" / "sha256"
    if not d.is_dir():
        return []
    idx = _load_index(paths)
    used: set[str] = set()
    for m in _manifests(idx):
        with contextlib.suppress(SdctrError, KeyError, ValueError, TypeError):
            used.update(blobs_of(paths, m))
    found = []
    for p in d.iterdir():
        digest = f"sha256:{p.name}"
        if is_digest(digest) and digest not in used:
            with contextlib.suppress(FileNotFoundError):
                found.append((digest, p.stat().st_size))
    return found


def write_blob_bytes(paths: Paths, data: bytes) -> str:
    return write_blob(paths, [data])[0]


def chunks_of(stream: Readable, size: int = 1 << 20) -> Iterator[bytes]:
    return iter(lambda: stream.read(size), b"")


def blobs_of(paths: Paths, manifest_digest: str) -> list[str]:
    """The manifest, its config and its layers."""
    m = read_json_blob(paths, manifest_digest)
    return [manifest_digest, m["config"]["digest"], *(d["digest"] for d in m.get("layers") or [])]


def discard_unused(paths: Paths, digests: Iterable[str]) -> None:
    """Deletes those of ``digests`` that no image references: what a failed pull, load or import
    wrote (another one running at the same time may share some). Temporary blobs a killed
    (SIGKILL) writer left go too."""
    digests = list(digests)
    if digests:
        with state.locked(paths):
            _discard_unused_locked(paths, _load_index(paths), digests)
    sweep_dead_temps(paths)


def _discard_unused_locked(paths: Paths, idx: Mapping[str, Any], digests: Iterable[str]) -> int:
    used: set[str] = set()
    for m in _manifests(idx):
        with contextlib.suppress(SdctrError, KeyError, ValueError, TypeError):
            used.update(blobs_of(paths, m))
    freed = 0
    for digest in dict.fromkeys(digests):
        if digest not in used:
            with contextlib.suppress(FileNotFoundError):
                path = paths.blob(digest)
                size = path.stat().st_size
                path.unlink()
                freed += size
    return freed


def read_json_blob(paths: Paths, digest: str, *, verify: bool = True) -> dict[str, Any]:
    """A manifest or config: at most MAX_DOCUMENT bytes, a JSON object, and verified against its
    digest unless `verify` is false (`run` reads them so: write_blob let them in only once their
    digest matched, and hashlib is OpenSSL's ~3 ms import)."""
    try:
        with open(paths.blob(digest), "rb") as f:
            data = f.read(MAX_DOCUMENT + 1)
    except FileNotFoundError:
        raise SdctrError(f"blob {digest} is missing from the image store",
                         hint="remove the image and import or pull it again") from None
    document: dict[str, Any] = parse_document(data, f"blob {digest}")
    if verify and sha256_digest(data) != digest:
        raise SdctrError(f"blob {digest} is corrupt (its content has another digest)")
    return document


def parse_document(data: bytes, what: str, *, array: bool = False) -> Any:
    """A manifest, index or image config, from the store or from outside (with ``array``: `docker
    save`'s manifest.json): at most MAX_DOCUMENT bytes of JSON, an object (an array). Anything else
    is an SdctrError "<what> is …", ``what`` naming the document ("blob sha256:…")."""
    if len(data) > MAX_DOCUMENT:
        raise SdctrError(f"{what} is more than {MAX_DOCUMENT} bytes: not a manifest or image config")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: "[[[[…" deeper than Python's stack
        raise SdctrError(f"{what} is not JSON") from None
    if not isinstance(document, list if array else dict):
        raise SdctrError(f"{what} is not a JSON {'array' if array else 'object'}")
    return document


def sha256_digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def copy_hashing(src: Readable, dst: Any) -> str:
    """Copies a stream into a file: the digest of what went through."""
    import hashlib

    sha = hashlib.sha256()
    for data in chunks_of(src):
        sha.update(data)
        dst.write(data)
    return f"sha256:{sha.hexdigest()}"


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def layer_descriptor(digest: str, size: int, compression: str = "", *,
                     unpacked: int | None = None) -> dict[str, Any]:
    """The OCI descriptor of a layer blob (``compression``: "gzip", "zstd" or "" for a plain tar);
    ``unpacked`` becomes our annotation, the SIZE column's source."""
    descriptor: dict[str, Any] = {"mediaType": MEDIA_LAYER + (f"+{compression}" if compression else ""),
                                  "digest": digest, "size": size}
    if unpacked is not None:
        descriptor["annotations"] = {UNPACKED_SIZE: str(unpacked)}
    return descriptor


def manifest_bytes(config_digest: str, config_size: int, layers: Sequence[Mapping[str, Any]]) -> bytes:
    """An OCI image manifest, canonical: the same image always has the same manifest digest."""
    return canonical({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config_size},
        "layers": list(layers),
    })


# --- documents from outside ------------------------------------------------------------------------
# Every reader of the store (images, inspect, history, run) takes the shapes below for granted, so
# a manifest or config from outside is checked once, before it becomes an image: one with a string
# for Env or a list for rootfs would otherwise break every later `sdctr images`.

def _is_strings(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_string_map(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(x, str) for x in v.values())


def _is_descriptor(v: Any) -> bool:
    if not (isinstance(v, dict) and is_digest(v.get("digest")) and isinstance(v.get("size", 0), int)):
        return False
    annotations = v.get("annotations") or {}
    # the SIZE column reads our own annotation as a number, whoever wrote it
    return _is_string_map(annotations) and annotations.get(UNPACKED_SIZE, "0").isdigit()


def _each(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


_HISTORY_TEXT = ("created", "created_by", "comment")


def _history_step(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(v.get(k, ""), str) for k in _HISTORY_TEXT)


_IS_OBJECT = _optional(lambda v: isinstance(v, dict))
_IS_STRING = _optional(lambda v: isinstance(v, str))

# (field, check, what it must be)
_MANIFEST_FIELDS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("config", _is_descriptor, "a descriptor with a sha256 digest"),
    ("layers", _each(_is_descriptor), "a list of descriptors with sha256 digests"),
)
_CONFIG_FIELDS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("rootfs", lambda v: isinstance(v, dict), "an object"),
    ("rootfs.diff_ids", _each(is_digest), "a list of sha256 digests"),
    ("config", _IS_OBJECT, "an object"),
    *((f"config.{key}", _optional(_is_strings), "a list of strings") for key in ("Env", "Cmd", "Entrypoint")),
    *((f"config.{key}", _IS_STRING, "a string") for key in ("WorkingDir", "User", "StopSignal")),
    *((f"config.{key}", _IS_OBJECT, "an object") for key in ("ExposedPorts", "Volumes")),
    ("config.Labels", _optional(_is_string_map), "an object of strings"),
    *((key, _IS_STRING, "a string") for key in ("created", "author", "architecture", "os")),
    ("history", _optional(_each(_history_step)), "a list of objects with string fields"),
)


def _field(doc: Mapping[str, Any], dotted: str) -> Any:
    value: Any = doc
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _problem(doc: Any, fields: Sequence[tuple[str, Callable[[Any], bool], str]]) -> str | None:
    if not isinstance(doc, dict):
        return "not a JSON object"
    for name, check, must_be in fields:
        if not check(_field(doc, name)):
            return f"{name} is not {must_be}"
    return None


def manifest_problem(manifest: Any) -> str | None:
    """Why an image manifest from outside cannot be stored (None: it can)."""
    return _problem(manifest, _MANIFEST_FIELDS)


def config_problem(config: Any, layers: int) -> str | None:
    """Why an image config from outside, for a manifest of ``layers`` layers, cannot be stored."""
    problem = _problem(config, _CONFIG_FIELDS)
    if problem is None and len(config["rootfs"]["diff_ids"]) != layers:
        return f"rootfs.diff_ids lists {len(config['rootfs']['diff_ids'])} layers, the manifest {layers}"
    return problem


# --- images.json -----------------------------------------------------------------------------------

def _index_path(paths: Paths) -> Path:
    return paths.root / "images.json"


def _load_index(paths: Paths) -> dict[str, Any]:
    try:
        idx: dict[str, Any] = state.read_json(_index_path(paths))
    except FileNotFoundError:
        idx = {}
    idx.setdefault("repositories", {})
    idx.setdefault("dangling", [])
    idx.setdefault("unpacked", {})
    return idx


def _set_tag(idx: dict[str, Any], key: str, manifest: str) -> None:
    repos: dict[str, str] = idx["repositories"]
    previous = repos.get(key)
    repos[key] = manifest
    if manifest in idx["dangling"]:
        idx["dangling"].remove(manifest)
    if previous and previous != manifest and previous not in repos.values():
        idx["dangling"].append(previous)


def _manifests(idx: Mapping[str, Any]) -> list[str]:
    return list(dict.fromkeys([*idx["repositories"].values(), *idx["dangling"]]))


def _load(paths: Paths, idx: Mapping[str, Any], manifest_digest: str) -> Image:
    manifest = read_json_blob(paths, manifest_digest, verify=False)
    config_digest = manifest["config"]["digest"]
    config = read_json_blob(paths, config_digest, verify=False)
    layers = manifest.get("layers") or []
    sizes = [_unpacked(d, idx) for d in layers]
    return Image(
        id=digest_hex(config_digest),
        repo_tags=tuple(sorted(k for k, v in idx["repositories"].items() if v == manifest_digest)),
        manifest_digest=manifest_digest,
        layers=tuple(config.get("rootfs", {}).get("diff_ids") or ()),
        layer_blobs=tuple(d["digest"] for d in layers),
        config=ImageConfig.from_oci(config.get("config")),
        created=config.get("created", ""),
        size=sum(sizes),
        architecture=config.get("architecture", ""),
        os=config.get("os", "linux"),
    )


def _unpacked(layer: Mapping[str, Any], idx: Mapping[str, Any]) -> int:
    """A layer's unpacked size: our annotation, the size recorded at pull or load, else the blob's."""
    for size in ((layer.get("annotations") or {}).get(UNPACKED_SIZE), idx["unpacked"].get(layer["digest"]),
                 layer.get("size")):
        if isinstance(size, int) or (isinstance(size, str) and size.isdigit()):
            return int(size)
    return 0


# --- the API ---------------------------------------------------------------------------------------

# what reading an image whose blob is gone, or whose document was stored before it was checked, raises
_UNREADABLE = (SdctrError, KeyError, TypeError, ValueError, AttributeError)


def _all(paths: Paths, idx: Mapping[str, Any]) -> Iterator[Image]:
    """Every image the store can read; one it cannot is skipped, so that it does not take every
    listing down with it."""
    for m in _manifests(idx):
        try:
            yield _load(paths, idx, m)
        except _UNREADABLE as e:
            debug(f"image {m} is unreadable, skipped: {e}")


def _by_id(paths: Paths, idx: Mapping[str, Any], hex_id: str) -> Image | None:
    """The image whose id is ``hex_id``: the id is the config digest, so the manifests alone tell
    which one it is, and only that image is loaded (the prestart hook resolves by id at every start)."""
    config = f"sha256:{hex_id}"
    for m in _manifests(idx):
        try:
            if read_json_blob(paths, m, verify=False)["config"]["digest"] == config:
                return _load(paths, idx, m)
        except _UNREADABLE as e:
            debug(f"image {m} is unreadable, skipped: {e}")
    return None


def list_images(paths: Paths) -> list[Image]:
    """Every image, newest first (as `docker images` lists them)."""
    sweep_dead_temps(paths)  # `sdctr images` is the next command after a killed pull, often
    return sorted(_all(paths, _load_index(paths)), key=lambda i: i.created, reverse=True)


def resolve(paths: Paths, ref: str) -> Image:
    """An image by name[:tag], name@digest, full image id, or a unique id prefix (3+ hex)."""
    idx = _load_index(paths)
    hex_id = _HEX_ID.fullmatch(ref)
    if hex_id and len(hex_id.group(1)) == 64:
        image = _by_id(paths, idx, hex_id.group(1))
        if image is not None:
            return image
    try:
        r = parse_reference(ref)
    except SdctrError:
        if not hex_id:
            raise
        r = None
    if r is not None and r.digest:
        if r.digest in _manifests(idx):
            return _load(paths, idx, r.digest)
    elif r is not None and r.key in idx["repositories"]:
        return _load(paths, idx, idx["repositories"][r.key])
    if hex_id:  # an id prefix, as Docker tries after the names
        found = {i.id: i for i in _all(paths, idx) if i.id.startswith(hex_id.group(1))}
        if len(found) > 1:
            raise SdctrError(f"{ref!r} matches {len(found)} images; give more of the id")
        if found:
            return next(iter(found.values()))
    raise NoSuchImage(f"no such image: {ref}", hint=_NO_IMAGE_HINT)


def require(paths: Paths, image: Image) -> None:
    """NoSuchImage unless ``image`` is still in the store; its caller holds the state lock, under
    which a record using it is made (sdctr.runtime.lifecycle.create)."""
    if image.manifest_digest not in _manifests(_load_index(paths)):
        raise NoSuchImage(f"no such image: {image.name} (removed meanwhile)", hint=_NO_IMAGE_HINT)


def users(paths: Paths, image: Image) -> list[str]:
    """The names of the containers whose record uses ``image``, created or running: exact under the
    state lock, which records are made under."""
    return [s.name for s in state.all_specs(paths) if s.image_id == image.id]


def tag(paths: Paths, src: str, dst: str) -> None:
    image = resolve(paths, src)
    key = tag_reference(dst).key
    with state.locked(paths):
        idx = _load_index(paths)
        _set_tag(idx, key, image.manifest_digest)
        state.write_json_atomic(_index_path(paths), idx)


def remove(paths: Paths, ref: str, *, force: bool = False) -> list[str]:
    """`docker rmi`: by name, untags it and deletes the image if that was its last tag; by id,
    deletes the image (with several tags only when forced). Blobs and unpacked layers nothing
    else references go too. An image a container uses (checked under the lock records are made
    under) is refused; forced, it is untagged and kept, untagged, while a container uses it.

    Returns Docker's report lines ("Untagged: busybox:latest", "Deleted: sha256:<id>").
    """
    image = resolve(paths, ref)
    return _remove(paths, image, _names_tag(ref, image.repo_tags), force=force)[0]


def _remove(paths: Paths, image: Image, by_name: str | None, *, force: bool,
            unused_only: bool = False) -> tuple[list[str], int]:
    """The report lines, and the bytes of the blobs deleted (nothing for an image in use, with
    ``unused_only``)."""
    lines: list[str] = []
    freed = 0
    with state.locked(paths):
        idx = _load_index(paths)
        repos: dict[str, str] = idx["repositories"]
        tags = sorted(k for k, v in repos.items() if v == image.manifest_digest)
        if by_name:
            tags = [by_name]
        # would the image go (no tag of it left)? Then no record may use it, as Docker refuses
        stays = any(v == image.manifest_digest and k not in tags for k, v in repos.items())
        used_by = [] if stays else users(paths, image)
        if used_by and unused_only:
            return [], 0
        if used_by and not force:
            raise SdctrError(f"image {by_name or image.short_id} is used by container(s) "
                             f"{', '.join(used_by)}", hint="remove them first, or use 'rmi -f'")
        if used_by and not tags:
            raise SdctrError(f"image {image.short_id} is used by container(s) {', '.join(used_by)} "
                             "and has no tag left to remove", hint="remove the containers first")
        elif len(tags) > 1 and not force:
            raise SdctrError(f"unable to delete {image.short_id}: the image is referenced in "
                             f"{len(tags)} repositories ({', '.join(tags)})",
                             hint="remove it by name, or force it with -f")
        for t in tags:
            del repos[t]
            lines.append(f"Untagged: {t}")
        if image.manifest_digest not in repos.values():
            if used_by:  # untagged, as Docker's `rmi -f`; kept, as <none>, for its containers
                if image.manifest_digest not in idx["dangling"]:
                    idx["dangling"].append(image.manifest_digest)
            else:
                if image.manifest_digest in idx["dangling"]:
                    idx["dangling"].remove(image.manifest_digest)
                lines.append(f"Deleted: sha256:{image.id}")
        state.write_json_atomic(_index_path(paths), idx)
        if lines and lines[-1].startswith("Deleted:"):
            freed = _collect_garbage(paths, idx, image)
    return lines, freed


def prune(paths: Paths, in_use: Collection[str], *, unused_too: bool = False) -> tuple[list[str], int]:
    """`docker image prune`: removes the untagged images (with ``unused_too``, every image) that no
    container uses (``in_use``: image ids). Returns the report lines and the bytes freed."""
    lines: list[str] = []
    freed = 0
    for image in list_images(paths):  # each by its manifest: two may share one config (id)
        if image.id not in in_use and (unused_too or not image.repo_tags):
            removed, n = _remove(paths, image, None, force=True, unused_only=True)
            lines += removed
            freed += n
    return lines, freed + collect_garbage(paths)


class HistoryEntry(Record):
    created: str
    created_by: str
    comment: str
    size: int
    layer: str | None  # the blob this step added; None for a step that only changed the config


def history(paths: Paths, image: Image) -> list[HistoryEntry]:
    """The steps that made the image, newest first (`docker history`), with the size each added."""
    config = read_json_blob(paths, f"sha256:{image.id}")
    idx = _load_index(paths)
    manifest = read_json_blob(paths, image.manifest_digest)
    sizes = [_unpacked(d, idx) for d in manifest.get("layers") or []]
    steps = config.get("history") or [{} for _ in image.layer_blobs]
    blobs = iter(zip(image.layer_blobs, sizes))
    entries = []
    for step in steps:
        blob, size = (None, 0) if step.get("empty_layer") else next(blobs, (None, 0))
        entries.append(HistoryEntry(created=step.get("created", ""), created_by=step.get("created_by", ""),
                                    comment=step.get("comment", ""), size=size, layer=blob))
    return entries[::-1]


def inspect(paths: Paths, image: Image) -> dict[str, Any]:
    """`docker image inspect`'s fields that mean something here."""
    config = read_json_blob(paths, f"sha256:{image.id}")
    repos = dict.fromkeys(t.rpartition(":")[0] for t in image.repo_tags)
    return {
        "Id": f"sha256:{image.id}",
        "RepoTags": list(image.repo_tags),
        "RepoDigests": [f"{r}@{image.manifest_digest}" for r in repos],
        "Created": image.created,
        "Author": config.get("author", ""),
        "Architecture": image.architecture,
        "Os": image.os,
        "Config": config.get("config") or {},
        "RootFS": {"Type": "layers", "Layers": list(image.layers)},
        "Size": image.size,
        "Metadata": {"ManifestDigest": image.manifest_digest},
    }


def _names_tag(ref: str, tags: Sequence[str]) -> str | None:
    """The tag ``ref`` names, if it is a name rather than an id (or a digest: `rmi busybox@sha256:…`
    names the image, not whichever tag points at it)."""
    with contextlib.suppress(SdctrError):
        r = parse_reference(ref)
        if not r.digest and r.key in tags:
            return r.key
    return None


def _collect_garbage(paths: Paths, idx: dict[str, Any], gone: Image) -> int:
    """Deletes ``gone``'s blobs and unpacked layers that no remaining image references: the bytes
    of the blobs deleted."""
    return _collect_garbage_of(paths, idx, (gone.manifest_digest, f"sha256:{gone.id}", *gone.layer_blobs))


def _collect_garbage_of(paths: Paths, idx: dict[str, Any], digests: Iterable[str]) -> int:
    freed = _discard_unused_locked(paths, idx, digests)
    diff_ids: set[str] = set()
    for m in _manifests(idx):
        with contextlib.suppress(SdctrError, KeyError, ValueError):
            diff_ids.update(_load(paths, idx, m).layers)
    for name in drivers.DRIVERS:
        drivers.driver(name, paths).prune(diff_ids)
    sizes: dict[str, int] = idx["unpacked"]
    if any(not paths.blob(b).exists() for b in sizes):
        idx["unpacked"] = {b: n for b, n in sizes.items() if paths.blob(b).exists()}
        state.write_json_atomic(_index_path(paths), idx)
    return freed


def create_image(paths: Paths, layer_blobs: Sequence[str], ref: str | None, *,
                 changes: Mapping[str, Any] | None = None, comment: str = "",
                 created_by: str = "sdctr import", author: str = "") -> Image:
    """Makes an image of layer blobs already in the store: reads each (all name rules apply, so
    a hostile tar is refused here, before anyone runs it) for its diff id and size, writes the
    OCI config and manifest, and tags the image ``ref`` (untagged if None)."""
    import datetime

    from sdctr.oci.layers import compression, inspect_layer  # tarfile: only when making images

    key = tag_reference(ref).key if ref else None
    config_section = _check_changes(changes or {})
    descriptors, diff_ids = [], []
    for blob in layer_blobs:
        with open(paths.blob(blob), "rb") as f:
            kind = compression(f.read(4))
            f.seek(0)
            info = inspect_layer(f, image=key or "(untagged)", digest=blob)
        diff_ids.append(info.diff_id)
        descriptors.append(layer_descriptor(blob, paths.blob(blob).stat().st_size, kind,
                                            unpacked=info.size))
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    config = {
        "created": created,
        "architecture": host_architecture(),
        "os": "linux",
        "config": config_section,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": created, "created_by": created_by, "comment": comment}],
    }
    if author:
        config["author"] = author
    config_bytes = canonical(config)
    config_digest = write_blob_bytes(paths, config_bytes)
    manifest_digest = write_blob_bytes(paths, manifest_bytes(config_digest, len(config_bytes), descriptors))
    add_manifest(paths, manifest_digest, key)
    return _load(paths, _load_index(paths), manifest_digest)


def record_unpacked(paths: Paths, sizes: Mapping[str, int]) -> None:
    """Layer blob -> unpacked bytes, learnt when the layers were first unpacked."""
    with state.locked(paths):
        idx = _load_index(paths)
        idx["unpacked"].update(sizes)
        state.write_json_atomic(_index_path(paths), idx)


def add_manifest(paths: Paths, manifest_digest: str, key: str | None) -> bool:
    """Makes a manifest whose blobs are all in the store an image, tagged ``key`` ("name:tag"; None
    leaves it untagged): True if it already was."""
    with state.locked(paths):
        # a concurrent `remove` may have collected a blob we share with the image it removed
        for digest in blobs_of(paths, manifest_digest):
            if not paths.blob(digest).exists():
                raise SdctrError(f"blob {digest} vanished while the image was stored (a concurrent "
                                 "removal?)", hint="run the command again")
        idx = _load_index(paths)
        if key:
            same = bool(idx["repositories"].get(key) == manifest_digest)
            _set_tag(idx, key, manifest_digest)
        else:
            same = manifest_digest in _manifests(idx)
            if not same:
                idx["dangling"].append(manifest_digest)
        state.write_json_atomic(_index_path(paths), idx)
    return same


def import_tarball(paths: Paths, source: str, ref: str, *, changes: Mapping[str, Any] | None = None) -> Image:
    """`docker import`: a root file system tarball (a path, or "-" for stdin; plain, gzip or zstd)
    becomes a one-layer image tagged ``ref`` (":latest" when no tag is given)."""
    tag_reference(ref)  # a bad name fails before reading a gigabyte from stdin
    _check_changes(changes or {})
    if source == "-":
        digest, _ = write_blob(paths, chunks_of(sys.stdin.buffer))
    else:
        try:
            f = open(source, "rb")
        except OSError as e:
            raise SdctrError(f"cannot read {source}: {e.strerror}") from None
        with f:
            digest, _ = write_blob(paths, chunks_of(f))
    try:
        return create_image(paths, [digest], ref, changes=changes, comment=f"imported from {source}")
    except BaseException:
        discard_unused(paths, [digest])  # unless another image already had this very blob
        raise


def host_architecture() -> str:
    """The host as an OCI/Go architecture name."""
    machine = os.uname().machine.lower()  # platform.machine(), without its import
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i386": "386",
            "i686": "386", "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
            "riscv64": "riscv64"}.get(machine, machine)


# --- import --change -------------------------------------------------------------------------------

def _check_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The OCI config section for ``changes`` (keys as in CONFIG_KEYS), with types checked."""
    out: dict[str, Any] = {}
    for key, given in changes.items():
        value: Any = given
        if key not in CONFIG_KEYS:
            raise SdctrError(f"--change: {key!r} cannot be set", hint=f"one of {', '.join(CONFIG_KEYS)}")
        if key in ("Env", "Cmd", "Entrypoint"):
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise SdctrError(f"--change: {key} must be a list of strings")
            value = list(value)
        elif key in ("ExposedPorts", "Labels", "Volumes"):
            if not isinstance(value, Mapping):
                raise SdctrError(f"--change: {key} must be a mapping")
            value = dict(value)
        elif not isinstance(value, str):
            raise SdctrError(f"--change: {key} must be a string")
        out[key] = value
    return out


def parse_changes(lines: Iterable[str]) -> dict[str, Any]:
    """`docker import --change` instructions (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR,
    STOPSIGNAL, VOLUME) as the ``changes`` mapping for import_tarball."""
    out: dict[str, Any] = {}
    for line in lines:
        word, _, rest = line.strip().partition(" ")
        instr, rest = word.upper(), rest.strip()
        if not rest:
            raise SdctrError(f"--change {line!r}: {instr or 'the instruction'} needs an argument")
        if instr in ("CMD", "ENTRYPOINT"):
            out[instr.title() if instr == "CMD" else "Entrypoint"] = _exec_form(line, rest)
        elif instr == "ENV":
            env = dict(e.split("=", 1) for e in out.get("Env", []))
            env.update(_pairs(line, rest, legacy_space=True))
            out["Env"] = [f"{k}={v}" for k, v in env.items()]
        elif instr == "LABEL":
            out.setdefault("Labels", {}).update(_pairs(line, rest, legacy_space=False))
        elif instr == "EXPOSE":
            ports = out.setdefault("ExposedPorts", {})
            for p in rest.split():
                if not re.fullmatch(r"\d{1,5}(?:-\d{1,5})?(?:/(?:tcp|udp|sctp))?", p):
                    raise SdctrError(f"--change {line!r}: {p!r} is not PORT[/PROTOCOL]")
                ports[p if "/" in p else f"{p}/tcp"] = {}
        elif instr == "VOLUME":
            vols = _exec_form(line, rest) if rest.startswith("[") else rest.split()
            out.setdefault("Volumes", {}).update({v: {} for v in vols})
        elif instr in ("USER", "WORKDIR", "STOPSIGNAL"):
            out[{"USER": "User", "WORKDIR": "WorkingDir", "STOPSIGNAL": "StopSignal"}[instr]] = rest
        else:
            raise SdctrError(f"--change {line!r}: {instr!r} is not supported",
                             hint="CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL")
    return out


def _exec_form(line: str, rest: str) -> list[str]:
    """JSON array form as is; shell form through /bin/sh -c, as a Dockerfile does."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SdctrError(f"--change {line!r}: not a JSON array of strings")
        return value
    return ["/bin/sh", "-c", rest]


def _pairs(line: str, rest: str, *, legacy_space: bool) -> dict[str, str]:
    words = shlex.split(rest)
    if legacy_space and words and "=" not in words[0]:  # ENV KEY value with spaces
        key, _, value = rest.partition(" ")
        return {key: value.strip()}
    pairs = {}
    for w in words:
        key, eq, value = w.partition("=")
        if not key or not eq:
            raise SdctrError(f"--change {line!r}: {w!r} is not KEY=VALUE")
        pairs[key] = value
    return pairs
