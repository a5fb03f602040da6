"""OCI image layouts written by hand: the input that skopeo pushes to a registry or copies into an
archive, so that what sdctr reads was made by someone else (pulling and loading are what the
tests prove, not this)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .rootfs import build_busybox_rootfs


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_dir(root: Path) -> bytes:
    """An uncompressed tar of what is below `root`, names relative to it, times zeroed."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in sorted(root.rglob("*")):
            info = tar.gettarinfo(str(p), arcname=str(p.relative_to(root)))
            info.mtime = 0
            if info.isreg():
                with open(p, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def tar_files(files: Mapping[str, bytes]) -> bytes:
    """An uncompressed tar of regular files, name -> content, mode 0644."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclasses.dataclass(frozen=True)
class Variant:
    arch: str
    env: tuple[str, ...]
    cmd: tuple[str, ...]
    layers: tuple[bytes, ...]  # uncompressed tars, bottom first


class Layout:
    """An OCI image layout directory; each tag names one image or (several variants) an index."""

    def __init__(self, root: Path):
        self.root = root
        (root / "blobs/sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        self.index: dict[str, Any] = {"schemaVersion": 2, "manifests": []}

    def _blob(self, data: bytes) -> str:
        digest = _sha(data)
        (self.root / "blobs/sha256" / digest.split(":")[1]).write_bytes(data)
        return digest

    def _image(self, v: Variant) -> dict[str, Any]:
        descs, diff_ids = [], []
        for tar in v.layers:
            gz = gzip.compress(tar, mtime=0)
            descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                          "digest": self._blob(gz), "size": len(gz)})
            diff_ids.append(_sha(tar))
        config = json.dumps({
            "created": "2024-01-01T00:00:00Z", "architecture": v.arch, "os": "linux",
            "config": {"Env": list(v.env), "Cmd": list(v.cmd), "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": self._blob(config), "size": len(config)},
            "layers": descs,
        }).encode()
        return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": self._blob(manifest),
                "size": len(manifest), "platform": {"os": "linux", "architecture": v.arch}}

    def add(self, tag: str, variants: Sequence[Variant]) -> None:
        descs = [self._image(v) for v in variants]
        if len(descs) == 1:
            desc = descs[0]
        else:
            index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                "manifests": descs}).encode()
            desc = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": self._blob(index),
                    "size": len(index)}
        self.index["manifests"].append({**desc, "annotations": {"org.opencontainers.image.ref.name": tag}})
        (self.root / "index.json").write_text(json.dumps(self.index))


def busybox_layer(tmp: Path) -> bytes:
    """The busybox root file system (helpers.rootfs) as one layer, built under `tmp`."""
    return tar_dir(build_busybox_rootfs(tmp / "busybox-rootfs"))


def small_layer(name: str, content: bytes) -> bytes:
    """A layer of one file, /etc/<name>."""
    return tar_files({f"etc/{name}": content})
