"""Container records under concurrency and crashes: status.json updated by the init, the poststop
hook and `rm` at once loses no update and is never brought back once removed; temp files of
killed writers are swept by the next listing; a rename is made durable with its directory."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sdctr import config, state
from sdctr.net import ipam
from sdctr.paths import Paths
from sdctr.spec import ContainerSpec

pytestmark = pytest.mark.unit

CID = "c" * 64


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths.from_root(str(tmp_path / "root"))
    state.save_spec(p, ContainerSpec(id=CID, name="rec", image="busybox", image_id="0" * 64,
                                     command=("true",)))
    return p


def in_processes(*jobs: Callable[[], None]) -> None:
    """Runs each job in a forked process of its own, all at once, as the init, the poststop
    hook and `rm` are; fails if one failed."""
    pids = []
    for job in jobs:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                job()
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    failed = [pid for pid in pids if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0]
    assert not failed, f"{len(failed)} of the writers failed"


ROUNDS = 150


def writer(paths: Paths, who: str) -> Callable[[], None]:
    """A hook that adds a key of its own to status.json, ROUNDS times: an update lost is a key
    missing for good."""
    def job() -> None:
        for n in range(ROUNDS):
            assert state.update_status(paths, CID, **{f"{who}-{n}": n}) is not None
    return job


def test_concurrent_status_updates_all_land(paths: Paths) -> None:
    """Three writers (init-like record_start, poststop-like and one more) read-modify-write
    status.json at once: every key each one added must be there. Without the record lock (the
    flock in record_locked removed) more than half of the 300 are lost."""
    def init_like() -> None:
        for _ in range(ROUNDS):
            state.record_start(paths, CID)

    in_processes(init_like, writer(paths, "poststop"), writer(paths, "other"))
    status = state.read_status(paths, CID)
    lost = [f"{who}-{n}" for who in ("poststop", "other") for n in range(ROUNDS)
            if status.get(f"{who}-{n}") != n]
    assert not lost, f"{len(lost)} updates lost"
    assert status["running"] is True
    assert sorted(os.listdir(paths.container_dir(CID))) == ["config.json", "status.json"]


def test_a_removed_record_is_never_written_again(paths: Paths) -> None:
    """Writers keep updating while `rm` removes the record: once it is gone every update says so
    (None) and none makes the directory again (write_json_atomic made missing parents)."""
    def late_writer() -> None:
        deadline = time.monotonic() + 20
        while state.update_status(paths, CID, running=False, finished_at=time.time()) is not None:
            assert time.monotonic() < deadline, "the record was never removed"
        for _ in range(20):  # and after: still gone
            assert state.update_status(paths, CID, running=False) is None
            state.record_start(paths, CID)

    def rm() -> None:
        time.sleep(0.05)
        state.remove_record(paths, CID)

    in_processes(late_writer, late_writer, rm)
    assert not paths.container_dir(CID).exists()
    assert os.listdir(paths.containers) == []


def test_a_write_needs_its_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        state.write_json_atomic(tmp_path / "gone" / "status.json", {})
    assert os.listdir(tmp_path) == []


def test_the_inits_etc_files_never_bring_a_removed_record_back(paths: Paths) -> None:
    """The init writes hostname, hosts and resolv.conf into the record directory after reading
    the record: an `rm` in between must fail the start with one line, not leave a directory
    without a config (it made it again, with its parents, mkdir(parents=True))."""
    from sdctr.init import standard
    from sdctr.log import SdctrError

    spec = state.find_by_id(paths, CID)
    standard.write_etc_files(paths, spec)
    names = sorted(os.listdir(paths.container_dir(CID)))
    assert names == ["config.json", "hostname", "hosts", "resolv.conf"]
    assert stat.S_IMODE(os.stat(paths.container_dir(CID) / "hosts").st_mode) == 0o644
    state.remove_record(paths, CID)
    with pytest.raises(SdctrError, match="removed while it started"):
        standard.write_etc_files(paths, spec)
    assert os.listdir(paths.containers) == []
    os.rmdir(paths.containers)  # nor its parent
    with pytest.raises(SdctrError, match="removed while it started"):
        standard.write_etc_files(paths, spec)
    assert not paths.containers.exists()


def test_temp_files_of_dead_writers_are_swept_by_the_next_listing(paths: Paths) -> None:
    """A writer killed before its rename leaves .NAME.tmpPID: gone at the next `ps` once PID is
    gone; one whose writer still runs is kept."""
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = paths.container_dir(CID)
        stale = [record / f".config.json.tmp{dead.pid}", paths.root / f".images.json.tmp{dead.pid}"]
        kept = [record / f".status.json.tmp{alive.pid}", record / f".status.json.tmp{os.getpid()}"]
        for p in stale + kept:
            p.write_text("{half")
        other = record / ".tmp-not-ours"  # not a writer's temp file
        other.write_text("")
        assert [s.name for s in state.all_specs(paths)] == ["rec"]
        assert [p.exists() for p in stale] == [False, False]
        assert [p.exists() for p in kept] == [True, True] and other.exists()
    finally:
        alive.kill()
        alive.wait()


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """The fsyncs (of a directory: True) and renames made, in order."""
    made: list[tuple[str, bool]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        made.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
        real_fsync(fd)

    def rename(*args: object, **kw: object) -> None:
        made.append(("rename", False))
        real_rename(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    return made


DURABLE = [("fsync", False), ("rename", False), ("fsync", True)]


def test_a_rename_is_followed_by_an_fsync_of_its_directory(paths: Paths,
                                                             synced: list[tuple[str, bool]]) -> None:
    state.update_status(paths, CID, running=True)
    assert synced == DURABLE


# sdctr's three atomic writers, one helper (state.write_atomic): a record (0600, it carries the
# environment; durable), sdctr.yaml (0644 as /etc's files; durable; its directory made), a lease
# (0644; not fsync-ed: on the start path, and written again at the next start)
WRITERS = {
    "record": (state.write_json_atomic, "x.json", 0o600, True),
    "sdctr.yaml": (lambda p, t: config.set_storage(p, "overlay", {"min_free": t}), "etc/sdctr.yaml",
                   0o644, True),
    "lease": (lambda p, t: ipam.write_atomic(p, f"{t}\n"), "10.89.0.7", 0o644, False),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_each_writer_keeps_its_mode_and_durability(tmp_path: Path, synced: list[tuple[str, bool]],
                                                   writer: str) -> None:
    write, name, mode, durable = WRITERS[writer]
    path = tmp_path / name
    old = os.umask(0o022)
    try:
        write(path, 10)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert "10" in path.read_text()
    assert synced == (DURABLE if durable else [("rename", False)])


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             writer: str) -> None:
    write, name, _, _ = WRITERS[writer]
    path = tmp_path / name
    write(path, 10)
    before = path.read_text()

    def rename(*args: object, **kw: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="Input/output"):
        write(path, 20)
    assert path.read_text() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_half_made_record_goes_at_the_next_listing(paths: Paths) -> None:
    """`run -d` killed between the record's directory and its config.json (issue 17: invisible to
    `ps -a`, and `rm -f` said "no such container")."""
    half = paths.container_dir("d" * 64)
    half.mkdir()
    (half / f".config.json.tmp{_dead_pid()}").write_text("{")
    assert [s.id for s in state.all_specs(paths)] == [CID]
    assert not half.exists()
    assert sorted(p.name for p in paths.containers.iterdir()) == [CID]


def test_exit_files_go_with_their_container_and_when_nobody_will_read_them(paths: Paths) -> None:
    from sdctr.runtime import hooks

    paths.run.mkdir(parents=True, exist_ok=True)
    gone, awaited, kept, late = "e" * 64, "f" * 64, CID, "d" * 64
    for cid in (gone, awaited, kept, late):
        hooks.exit_file(paths, cid).write_text('{"exit_code": 0}')
    # the attached run of `awaited` is alive (this process); the one of `gone` was killed; a
    # `wait` may still come for `late`, removed (--rm) a moment ago
    state.reader_mark(paths, awaited).touch()
    (paths.run / f".{gone}.exit.json.tmp{_dead_pid()}").touch()
    old = time.time() - state.EXIT_KEPT - 1
    os.utime(hooks.exit_file(paths, gone), (old, old))
    state.all_specs(paths)
    assert not hooks.exit_file(paths, gone).exists()
    assert hooks.exit_file(paths, awaited).exists() and hooks.exit_file(paths, kept).exists()
    assert hooks.exit_file(paths, late).exists()
    hooks.remove_container(paths, state.find_by_id(paths, CID))  # what `rm` does
    assert not hooks.exit_file(paths, kept).exists()


@pytest.mark.parametrize(("unit", "says"), [
    ({"ActiveState": "activating", "SubState": "start", "MainPID": 7}, "is starting"),
    ({"ActiveState": "activating", "SubState": "auto-restart", "MainPID": 0}, "is restarting"),
    ({"ActiveState": "inactive", "SubState": "dead", "MainPID": 0}, "is not running")])
def test_exec_into_a_restarting_container_says_so(paths: Paths, unit: dict[str, object], says: str) -> None:
    from sdctr.log import SdctrError
    from sdctr.runtime import lifecycle

    class Sd:
        def unit_state(self, name: str) -> dict[str, object]:
            return unit

    with pytest.raises(SdctrError, match=says) as raised:
        lifecycle.running_unit(Sd(), state.find_by_id(paths, CID))  # type: ignore[arg-type]
    assert raised.value.status == 1  # Docker's for exec, top, pause of a container not running


class _StoppedUnit:
    """systemd as the next command finds it after a poststop hook was killed: the unit collected
    (or, `idle=False`, a start of it queued meanwhile)."""

    def __init__(self, idle: bool = True):
        self._idle = idle

    def active_state(self, unit: str) -> str:
        return "inactive"

    def idle(self, unit: str) -> bool:
        return self._idle

    def unit_state(self, unit: str) -> dict[str, object]:
        return {}


@pytest.mark.parametrize("idle", [True, False])
def test_a_stop_cut_short_is_finished_by_the_next_command(tmp_path: Path, idle: bool) -> None:
    """The record says running and the unit is gone: the next command finishes the stop (status,
    exit 255 as Docker's daemon records it), unless systemd says a start is under way."""
    from sdctr.runtime import lifecycle
    from sdctr.spec import NetworkMode

    paths = Paths.from_root(str(tmp_path / "root"))
    spec = state.save_spec(paths, ContainerSpec(id=CID, name="cut", image="busybox", image_id="0" * 64,
                                                command=("true",), network=NetworkMode.NONE))
    state.record_start(paths, CID)
    assert lifecycle.finish_stop_of(paths, _StoppedUnit(idle), spec) is idle  # type: ignore[arg-type]
    status = state.read_status(paths, CID)
    assert status["running"] is not idle
    if idle:
        assert status["exit_code"] == 255 and status["finished_at"]
        assert lifecycle.finish_stop_of(paths, _StoppedUnit(), spec) is False  # done once


def test_a_create_cut_short_gets_its_snapshot_from_the_next_command(tmp_path: Path) -> None:
    """`run` killed between writing the record and making its snapshot (issue 17's campaign, 1 of
    608): the next command that looks at the container makes the snapshot, so it can start."""
    from sdctr.runtime import lifecycle
    from sdctr.spec import NetworkMode
    from sdctr.storage import drivers

    paths = Paths.from_root(str(tmp_path / "root"))
    spec = state.save_spec(paths, ContainerSpec(id=CID, name="cut", image="busybox", image_id="0" * 64,
                                                command=("true",), network=NetworkMode.NONE,
                                                storage="overlay"))
    snapshot = drivers.driver("overlay", paths).snapshot_dir(CID)
    assert snapshot is not None and not snapshot.exists()
    lifecycle.finish_stop_of(paths, _StoppedUnit(), spec)  # type: ignore[arg-type]
    assert (snapshot / "upper").is_dir() and (snapshot / "work").is_dir()
    assert paths.rootfs(CID).is_dir()
