"""A declared container's record, made when its unit starts (`sdctr hook declare NAME`, the
unit's first ExecStartPre; see sdctr.systemd.generator for why not at generation time).

The record is kept while its file is unchanged: the file's digest is stored beside it, and a
changed file (or `pull: always`) remakes the record and its writable snapshot, as Docker
Compose recreates a service whose configuration changed. The unit is stopped whenever this
runs, so the old snapshot is unmounted (its poststop ran).
"""

from __future__ import annotations

import hashlib
import os

from sdctr.log import debug
from sdctr.options import declared_dir, read_declared, user_env
from sdctr.paths import Paths
from sdctr.state import NoSuchContainer, find_by_id
from sdctr.systemd.generator import declared_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdctr.image.store import Image

STAMP = "declared.sha256"  # beside config.json: the digest of the file it was made from


def hook(paths: Paths, name: str) -> int:
    """`sdctr hook declare NAME`: the record, then the transient path's prestart."""
    from sdctr.runtime import hooks

    return hooks.prestart(paths, declare(paths, name))


def declare(paths: Paths, name: str) -> str:
    """The record of the container declared as `name`, made or remade as its file says; its id."""
    from sdctr.runtime import hooks

    path = os.path.join(declared_dir(), f"{name}.yaml")
    options = read_declared(path)  # first: a broken file fails the start with its error
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    cid = declared_id(name)
    try:
        current = find_by_id(paths, cid)
    except NoSuchContainer:
        current = None
    stamp = paths.container_dir(cid) / STAMP
    if current is not None and options.pull != "always" and _read(stamp) == digest:
        return cid
    paths.make_private()
    image = _image(paths, options.image, options.pull, options.platform)
    from sdctr.runtime.lifecycle import create
    from sdctr.runtime.resolve import resolve

    spec = resolve(options, image, user_env=user_env(options, os.environ)).replace(id=cid, declared=True)
    if current is not None:
        debug(f"{path} changed: remaking container {name}")
        hooks.remove_container(paths, current)
    spec = create(paths, spec, image, starting=True)
    stamp.write_text(digest + "\n")
    return cid


def _image(paths: Paths, ref: str, pull: str, platform: str | None) -> Image:
    from sdctr.image import store as images

    if pull != "always":
        try:
            return images.resolve(paths, ref)
        except images.NoSuchImage:
            if pull == "never":
                raise
    from sdctr.image import registry

    return registry.pull(paths, ref, platform=platform)


def _read(path: os.PathLike[str]) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""
