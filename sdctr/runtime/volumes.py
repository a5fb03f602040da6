"""Named volumes: `sdctr volume create/ls/inspect/rm/prune`, `-v NAME:/path`, `--mount
type=volume`. A volume is a directory, <root>/volumes/<name>/_data as Docker's local driver
keeps it, with volume.json beside it (name, creation time, labels). It is made when first
named (by `volume create`, or by the container that first uses it, at create), filled at the
container's first start with what the image has at the mount point (Docker's copy-up, done by
the init: sdctr.init.standard.mount_volumes), and it outlives its containers: `rm` leaves it,
and a volume that a container (running or not) names cannot be removed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from sdctr.log import SdctrError
from sdctr.options import VOLUME_NAME
from sdctr.paths import Paths
from sdctr.record import Record
from sdctr.spec import ContainerSpec
from sdctr.state import all_specs, locked, write_json_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EXIT_NO_SUCH_VOLUME = 1  # as Docker's CLI: the daemon's "no such volume" is its exit 1


class Volume(Record):
    name: str
    created: float
    labels: tuple[str, ...] = ()

    def describe(self, paths: Paths) -> dict[str, Any]:
        """`volume inspect`'s document, Docker's fields."""
        return {"CreatedAt": _iso(self.created), "Driver": "local",
                "Labels": dict(label.partition("=")[::2] for label in self.labels),
                "Mountpoint": str(paths.volume_data(self.name)), "Name": self.name,
                "Options": {}, "Scope": "local"}


def _meta(paths: Paths, name: str) -> Path:
    return paths.volume_data(name).parent / "volume.json"


def check_name(name: str) -> None:
    if not VOLUME_NAME.fullmatch(name):
        raise SdctrError(f"{name!r} is not a volume name",
                         hint="letters, digits, '_', '.', '-'; a letter or digit first; two or more")


def create(paths: Paths, name: str, labels: tuple[str, ...] = ()) -> Volume:
    """The volume, made if it does not exist (Docker's `volume create` of an existing name is
    not an error either)."""
    check_name(name)
    with locked(paths):
        try:
            return get(paths, name)
        except SdctrError:
            pass
        data = paths.volume_data(name)
        data.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data.mkdir(mode=0o755, exist_ok=True)
        volume = Volume(name=name, created=time.time(), labels=labels)
        write_json_atomic(_meta(paths, name), {"name": name, "created": volume.created,
                                               "labels": list(labels)})
        return volume


def get(paths: Paths, name: str) -> Volume:
    try:
        d = json.loads(_meta(paths, name).read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        e = SdctrError(f"no such volume: {name}")
        e.status = EXIT_NO_SUCH_VOLUME
        raise e from None
    return Volume(name=d["name"], created=float(d.get("created", 0)), labels=tuple(d.get("labels", ())))


def all_volumes(paths: Paths) -> list[Volume]:
    top = paths.root / "volumes"
    if not top.is_dir():
        return []
    found = []
    for entry in sorted(os.listdir(top)):
        try:
            found.append(get(paths, entry))
        except SdctrError:
            continue  # a directory being made, or not ours
    return found


def users(paths: Paths, name: str) -> list[ContainerSpec]:
    return [s for s in all_specs(paths) if any(m.kind == "volume" and m.source == name for m in s.mounts)]


def remove(paths: Paths, name: str, force: bool = False) -> None:
    """Docker's `volume rm`: refused while a container names it (`-f` does not change that)."""
    with locked(paths):
        get(paths, name)
        using = users(paths, name)
        if using:
            raise SdctrError(f"volume {name} is in use by container {using[0].name} ({using[0].short_id})",
                             hint=f"remove the container first: sdctr rm {using[0].name}")
        shutil.rmtree(paths.volume_data(name).parent)


def prune(paths: Paths) -> list[str]:
    """Every volume no container names, removed; their names."""
    removed = []
    with locked(paths):
        used = {m.source for s in all_specs(paths) for m in s.mounts if m.kind == "volume"}
        for volume in all_volumes(paths):
            if volume.name not in used:
                shutil.rmtree(paths.volume_data(volume.name).parent)
                removed.append(volume.name)
    return removed


def ensure(paths: Paths, spec: ContainerSpec) -> None:
    """The volumes `spec` names, made if new (called at create, under the store's lock)."""
    for m in spec.mounts:
        if m.kind == "volume":
            create(paths, m.source)


def _iso(ts: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat().replace("+00:00", "Z")
