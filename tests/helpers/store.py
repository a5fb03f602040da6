"""sdctr's image store as the tests fill and read it: a tiny image to import, the blobs a store
holds."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path


def rootfs_tar(tmp_path: Path, marker: str = "hello", *, compress: bool = True) -> tuple[Path, bytes]:
    """A tiny root file system, tarred as `tar -C dir .` would: (tarball, uncompressed tar). Its
    /bin/sh is no program: for the store, not for running."""
    src = tmp_path / f"src-{marker}"
    (src / "bin").mkdir(parents=True)
    (src / "etc").mkdir()
    (src / "bin/sh").write_bytes(b"#!fake shell\n")
    (src / "bin/sh").chmod(0o755)
    os.symlink("sh", src / "bin/ash")
    (src / "etc/motd").write_text(f"{marker}\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        t.add(src, arcname=".")
    raw = buf.getvalue()
    out = tmp_path / f"{marker}.tar{'.gz' if compress else ''}"
    out.write_bytes(gzip.compress(raw) if compress else raw)
    return out, raw


def blob_files(root: Path) -> set[str]:
    """The names in the store's blobs/sha256 under `root`: a leaked .tmp-* counts too."""
    d = root / "blobs/sha256"
    return {p.name for p in d.iterdir()} if d.is_dir() else set()
