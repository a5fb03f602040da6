"""Container records: specs, status, the lock that claims names.

    <root>/containers/<id>/config.json   the ContainerSpec: the single source of truth
    <root>/containers/<id>/status.json   what the last run left: exit code, OOM, finished time
    <run>/<id>/rootfs                    the mounted snapshot while the unit runs
    <run>/netns/<id>                     the pinned network namespace (networking issue)

<root> is /var/lib/sdctr and <run> is /run/sdctr; --root/SDCTR_ROOT moves both (run becomes
<root>/run), so a test never touches the machine's own state. Records are written atomically
(temp file, fsync, rename) and names are claimed under one lock, so two concurrent `run --name x`
cannot both win.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.spec import ContainerSpec

# typing.TYPE_CHECKING without importing typing: the init and the hooks import this module,
# and typing is ~3 ms of each start of theirs
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    # 0600 from the start (a record carries the environment): never readable, then chmod-ed
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    with open(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


@contextlib.contextmanager
def locked(paths: Paths) -> Iterator[None]:
    paths.make_private()  # every record and snapshot is made under this lock
    with open(paths.root / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def all_specs(paths: Paths) -> list[ContainerSpec]:
    specs = []
    if paths.containers.is_dir():
        for d in paths.containers.iterdir():
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                specs.append(ContainerSpec.from_json(read_json(d / "config.json")))
    return sorted(specs, key=lambda s: s.created)


def save_spec(paths: Paths, spec: ContainerSpec) -> ContainerSpec:
    """Claims the name, or picks a free one for a spec without, and writes the record; under the
    lock, so names stay unique. The spec as saved."""
    with locked(paths):
        taken = {other.name: other for other in all_specs(paths) if other.id != spec.id}
        if not spec.name:
            spec = spec.replace(name=_free_name(taken))
        elif spec.name in taken:
            raise SdctrError(f"the container name {spec.name!r} is already in use by container "
                             f"{taken[spec.name].short_id}", hint=f"remove it ('sdctr rm {spec.name}') "
                             "or choose another --name")
        write_json_atomic(paths.container_dir(spec.id) / "config.json", spec.to_json())
    return spec


_ADJECTIVES = ("brave", "calm", "eager", "fond", "keen", "lucid", "merry", "nimble", "quiet", "stoic")
_NOUNS = ("curie", "hopper", "lovelace", "noether", "ritchie", "shannon", "thompson", "turing")


def _free_name(taken: Collection[str]) -> str:
    """Docker's adjective_scientist, with a number when both words are taken."""
    while True:
        name = f"{_pick(_ADJECTIVES)}_{_pick(_NOUNS)}"
        if name not in taken:
            return name
        name += str(_pick(range(100)))
        if name not in taken:
            return name


def _pick(choices: Sequence[Any]) -> Any:
    return choices[int.from_bytes(os.urandom(4), "little") % len(choices)]  # random's import: ~1 ms


class NoSuchContainer(SdctrError):
    """No container by that name or id (`inspect` then looks for an image)."""


def find(paths: Paths, ref: str) -> ContainerSpec:
    """By name, full id, or unique id prefix, as Docker resolves container references."""
    specs = all_specs(paths)
    for s in specs:
        if ref in (s.name, s.id):
            return s
    matches = [s for s in specs if len(ref) >= 3 and s.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise SdctrError(f"{ref!r} matches {len(matches)} containers; give more of the id")
    raise NoSuchContainer(f"no such container: {ref}")


def find_by_id(paths: Paths, cid: str) -> ContainerSpec:
    try:
        return ContainerSpec.from_json(read_json(paths.container_dir(cid) / "config.json"))
    except FileNotFoundError:
        raise NoSuchContainer(f"no such container: {cid}") from None


def read_status(paths: Paths, cid: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = read_json(paths.container_dir(cid) / "status.json")
        return data
    except (FileNotFoundError, ValueError):
        return {}


def write_status(paths: Paths, cid: str, status: dict[str, Any]) -> None:
    write_json_atomic(paths.container_dir(cid) / "status.json", status)


def record_start(paths: Paths, cid: str) -> None:
    """The init calls this once the container runs (every start, systemctl restart included)."""
    status = read_status(paths, cid)
    status.update(started_at=time.time(), running=True, exit_code=None, oom_killed=False)
    write_status(paths, cid, status)
