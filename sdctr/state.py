"""Container records: specs, status, the lock that claims names.

    <root>/containers/<id>/config.json   the ContainerSpec: the single source of truth
    <root>/containers/<id>/status.json   what the last run left: exit code, OOM, finished time
    <run>/<id>/rootfs                    the mounted snapshot while the unit runs
    <run>/netns/<id>                     the pinned network namespace (networking issue)

<root> is /var/lib/sdctr and <run> is /run/sdctr; --root/SDCTR_ROOT moves both (run becomes
<root>/run), so a test never touches the machine's own state. Records are written atomically
(temp file, fsync, rename, fsync of the directory) and names are claimed under one lock, so two
concurrent `run --name x` cannot both win.

status.json is read, changed and written by the init (started), the poststop hook (exited) and
`rm` (removed) of one container, which may all run at once: each does so holding the record's
own lock, a flock on the record directory. A write goes through the directory opened first and
never creates it, so a hook that lost the race to `rm` cannot bring the record back. A writer
killed before its rename leaves `.NAME.tmpPID`; the next command that lists containers deletes
those whose PID is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path

from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.spec import ContainerSpec

# typing.TYPE_CHECKING without importing typing: the init and the hooks import this module,
# and typing is ~3 ms of each start of theirs
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_TMP = ".tmp"  # .NAME.tmpPID: a temp file of write_atomic, swept once PID is gone


def write_atomic(path: Path, text: str, *, mode: int = 0o600, durable: bool = True,
                 dir_fd: int | None = None) -> None:
    """Writes ``path`` whole or not at all: a temp file (.NAME.tmpPID, which sweep_dead_writers
    deletes once its writer is gone) renamed over it. `mode` is the new file's from the start (the
    umask applies): never readable by others first and chmod-ed after. `durable`: the file fsync-ed
    before the rename and the directory after, so that a crash leaves the old text or the new one;
    without, a crash may leave an empty file (for what is written again anyway, where an fsync
    would cost every container start). The directory must exist (FileNotFoundError otherwise),
    and it is the one that ``dir_fd`` holds open when given: a record `rm` removed is never
    created again."""
    d = os.open(path.parent, _DIR_FLAGS) if dir_fd is None else dir_fd
    try:
        tmp = f".{path.name}{_TMP}{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, mode,
                     dir_fd=d)
        try:
            with open(fd, "w") as f:
                f.write(text)
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.rename(tmp, path.name, src_dir_fd=d, dst_dir_fd=d)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=d)
            raise
        if durable:
            os.fsync(d)  # the rename itself, so that a crash cannot undo it
    finally:
        if dir_fd is None:
            os.close(d)


def write_json_atomic(path: Path, data: Any, *, dir_fd: int | None = None) -> None:
    """``data`` as JSON, durably and 0600 (a record carries the environment): write_atomic."""
    write_atomic(path, json.dumps(data, indent=2), dir_fd=dir_fd)


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


_held: dict[str, int] = {}  # root -> depth: the lock is taken once per process, however nested


@contextlib.contextmanager
def locked(paths: Paths) -> Iterator[None]:
    """The store's one lock: names, records and image references change under it. Re-entrant
    within a process (a second flock of the same file by the same process would wait for itself)."""
    key = str(paths.root)
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    paths.make_private()  # every record and snapshot is made under this lock
    with open(paths.root / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        _held[key] = 1
        try:
            yield
        finally:
            _held[key] = 0


def all_specs(paths: Paths) -> list[ContainerSpec]:
    """Every record, oldest first; temp files of killed writers in them are swept on the way, and
    so are a record a killed `run`/`create` left half-made (a directory without its config.json)
    and exit files nobody will read."""
    specs = []
    for d in (paths.root, paths.run):  # images.json, exit files
        sweep_dead_writers(d)
    half_made = []
    if paths.containers.is_dir():
        for d in paths.containers.iterdir():
            sweep_dead_writers(d)
            try:
                specs.append(ContainerSpec.from_json(read_json(d / "config.json")))
            except FileNotFoundError:
                half_made.append(d)
            except (ValueError, KeyError):
                pass
    if half_made:
        _remove_half_made(paths, half_made)
    _sweep_unread_exit_files(paths, {s.id for s in specs})
    return sorted(specs, key=lambda s: s.created)


def _remove_half_made(paths: Paths, dirs: list[Path]) -> None:
    """A record directory is made and its config.json written under the state lock (save_spec):
    holding it, a directory without config.json is one whose maker was killed, and nothing else
    (snapshot, unit) was made for it yet. Its files are temps of dead writers; a live writer's
    temp (a record being removed?) keeps it."""
    import shutil

    with locked(paths):
        for d in dirs:
            sweep_dead_writers(d)
            with contextlib.suppress(FileNotFoundError):
                if not (d / "config.json").exists() and not any(_TMP in n for n in os.listdir(d)):
                    shutil.rmtree(d, ignore_errors=True)


EXIT_SUFFIX = ".exit.json"  # <run>/<id>.exit.json: the poststop hook leaves it for an attached run
# ... and for a `wait` that comes after a --rm container is gone: kept this long (seconds) once
# nobody else will read it, then swept
EXIT_KEPT = 60.0


def reader_mark(paths: Paths, cid: str) -> Path:
    """An attached `run` marks that it will read the exit file: the mark is named as a temp of its
    own (.ID.exit.json.tmpPID), so that it goes with it when it is killed (sweep_dead_writers)."""
    return paths.run / f".{cid}{EXIT_SUFFIX}{_TMP}{os.getpid()}"


def _sweep_unread_exit_files(paths: Paths, records: Collection[str]) -> None:
    """Deletes the exit files whose container's record is gone (a --rm container) and whose
    reader, the attached `run`, is gone too (DESIGN.md, invariant 3), once older than EXIT_KEPT:
    a `wait` that starts just after the container was removed reads its exit status there."""
    try:
        names = os.listdir(paths.run)
    except FileNotFoundError:
        return
    readers = {n[1:].partition(_TMP)[0] for n in names if n.startswith(".") and _TMP in n}
    for name in names:
        if name.endswith(EXIT_SUFFIX) and not name.startswith("."):
            cid = name[:-len(EXIT_SUFFIX)]
            if cid not in records and name not in readers:
                with contextlib.suppress(FileNotFoundError):
                    if time.time() - os.stat(paths.run / name).st_mtime >= EXIT_KEPT:
                        os.unlink(paths.run / name)


def sweep_dead_writers(directory: Path) -> None:
    """Deletes the temp files (.NAME.tmpPID) in ``directory`` whose writer is no longer running:
    what write_atomic left when killed before its rename (DESIGN.md, invariant 4). A PID
    since reused by another process keeps its file until that one is gone too."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        pid = name.rpartition(_TMP)[2]
        if name.startswith(".") and _TMP in name and pid.isdigit() and not _running(int(pid)):
            with contextlib.suppress(OSError):  # gone already, or not a file
                os.unlink(directory / name)


def remove_unless_locked(path: Path, remove: Callable[[Path], None] = os.unlink) -> bool:
    """Removes what a writer left, file or directory (`remove`), unless its writer still runs:
    a writer holds a lock on each temp while it writes (DESIGN.md, invariant 4). True if removed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:  # gone already
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        remove(path)
        return True
    except OSError:  # locked: its writer runs
        return False
    finally:
        os.close(fd)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: running
        pass
    return True


def save_spec(paths: Paths, spec: ContainerSpec, *,
              check: Callable[[], None] | None = None) -> ContainerSpec:
    """Claims the name, or picks a free one for a spec without, and writes the record; under the
    lock, so names stay unique. ``check`` runs under the same lock before anything is written (the
    image store's: the image still exists, and `rmi`, which takes this lock, now sees its user).
    The spec as saved."""
    with locked(paths):
        if check is not None:
            check()
        others = all_specs(paths)
        taken = {other.name: other for other in others if other.id != spec.id}
        if not spec.name:
            spec = spec.replace(name=_free_name(taken))
        elif spec.name in taken:
            raise SdctrError(f"the container name {spec.name!r} is already in use by container "
                             f"{taken[spec.name].short_id}", hint=f"remove it ('sdctr rm {spec.name}') "
                             "or choose another --name")
        if all(other.id != spec.id for other in others):  # new: one `rm` removed is not made again
            paths.containers.mkdir(exist_ok=True)
            paths.container_dir(spec.id).mkdir(exist_ok=True)
            _fsync_dir(paths.containers)
        with record_locked(paths, spec.id) as d:
            write_json_atomic(paths.container_dir(spec.id) / "config.json", spec.to_json(), dir_fd=d)
    return spec


@contextlib.contextmanager
def record_locked(paths: Paths, cid: str) -> Iterator[int]:
    """The record's own lock (a flock on its directory), held for a read-modify-write of its files;
    yields the directory's fd, to write through. NoSuchContainer if the record is gone, or went
    while we waited for the lock."""
    try:
        d = os.open(paths.container_dir(cid), _DIR_FLAGS)
    except FileNotFoundError:
        raise NoSuchContainer(f"no such container: {cid}") from None
    try:
        fcntl.flock(d, fcntl.LOCK_EX)
        if os.fstat(d).st_nlink == 0:  # removed by the holder before us
            raise NoSuchContainer(f"no such container: {cid} (removed)")
        yield d
    finally:
        os.close(d)


def remove_record(paths: Paths, cid: str) -> None:
    """Deletes the record directory under its lock: a status write in progress completes first,
    one that waits finds the record gone."""
    import shutil

    with contextlib.suppress(NoSuchContainer), record_locked(paths, cid):
        shutil.rmtree(paths.container_dir(cid), ignore_errors=True)
        _fsync_dir(paths.containers)


def _fsync_dir(path: Path) -> None:
    d = os.open(path, _DIR_FLAGS)
    try:
        os.fsync(d)
    finally:
        os.close(d)


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


def update_status(paths: Paths, cid: str, **changes: Any) -> dict[str, Any] | None:
    """status.json with ``changes`` applied, read and written under the record's lock, so that
    concurrent updates (init, poststop) all land; the status as written, or None when the record
    is gone (removed by `rm`: it is not made again)."""
    try:
        with record_locked(paths, cid) as d:
            status = read_status(paths, cid)
            status.update(changes)
            write_json_atomic(paths.container_dir(cid) / "status.json", status, dir_fd=d)
            return status
    except NoSuchContainer:
        return None


def record_start(paths: Paths, cid: str) -> None:
    """The init calls this once the container runs (every start, systemctl restart included)."""
    update_status(paths, cid, started_at=time.time(), running=True, exit_code=None, oom_killed=False,
                  stopped_by_user=False)
