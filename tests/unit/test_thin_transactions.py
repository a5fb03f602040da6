"""The thin-pool driver's transactions without a kernel: dmsetup replaced by a pool kept in a JSON
file (devices by id, the transaction id), sdctr killed by SIGKILL at each step of create and delete
in a child process, then the pool brought up again: the pool and the metadata agree, no device is
leaked or lost. The real pool is the VM tier's (tests/vm/test_thin.py)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from sdctr import config
from sdctr.paths import Paths
from sdctr.storage import devicemapper, dmsetup
from sdctr.storage.devicemapper import DeviceMapperSnapshotter

CREATE_STEPS = ["create:opened", "create:messaged", "create:saved", "create:before-commit",
                "create:committed"]
DELETE_STEPS = ["delete:marked", "delete:opened", "delete:messaged", "delete:before-commit",
                "delete:committed"]


class FakePool:
    def __init__(self, path: Path):
        self.path = path

    def state(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"tid": 0, "devices": [], "active": []}

    def save(self, s: dict) -> None:
        self.path.write_text(json.dumps(s))

    def message(self, change) -> None:
        s = self.state()
        change(s)
        self.save(s)


def fail(reason: str) -> dmsetup.DmError:
    return dmsetup.DmError(f"dmsetup failed: {reason}", reason)


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePool:
    fake = FakePool(tmp_path / "fake-pool.json")

    def create_thin(pool: str, dev: int) -> None:
        def change(s: dict) -> None:
            if dev in s["devices"]:
                raise fail("File exists")
            s["devices"].append(dev)
        fake.message(change)

    def create_snap(pool: str, dev: int, origin: int) -> None:
        assert origin in fake.state()["devices"]
        create_thin(pool, dev)

    def delete(pool: str, dev: int) -> None:
        def change(s: dict) -> None:
            if dev not in s["devices"]:
                raise fail("No data available")
            s["devices"].remove(dev)
        fake.message(change)

    def set_tid(pool: str, old: int, new: int) -> None:
        def change(s: dict) -> None:
            if s["tid"] != old:
                raise fail("Invalid argument")
            s["tid"] = new
        fake.message(change)

    def create(name: str, table: str) -> None:
        fake.message(lambda s: s["active"].append(name))

    def remove(name: str) -> None:
        fake.message(lambda s: s["active"].remove(name) if name in s["active"] else None)

    m = monkeypatch.setattr
    m(dmsetup, "create_thin", create_thin)
    m(dmsetup, "create_snap", create_snap)
    m(dmsetup, "delete", delete)
    m(dmsetup, "set_transaction_id", set_tid)
    m(dmsetup, "transaction_id", lambda pool: fake.state()["tid"])
    m(dmsetup, "create", create)
    m(dmsetup, "remove", remove)
    m(dmsetup, "remove_deferred", remove)
    m(dmsetup, "exists", lambda name: name.endswith("-pool") or name in fake.state()["active"])
    m(dmsetup, "suspend", lambda name: None)
    m(dmsetup, "resume", lambda name: None)
    m(dmsetup, "pool_usage", lambda pool: fake.state().get("usage", ((1, 100), (1, 100), "rw")))

    def make_base(self: DeviceMapperSnapshotter, old: object) -> None:  # no mkfs without a kernel
        dev = self._new_device("base", None, filesystem="xfs")
        self._save(dev.replace(initialized=True))
    m(DeviceMapperSnapshotter, "_make_base", make_base)
    return fake


def snap(tmp_path: Path) -> DeviceMapperSnapshotter:
    return DeviceMapperSnapshotter(Paths.from_root(str(tmp_path / "root")), config.DeviceMapper())


def in_child(tmp_path: Path, kill_at: str, action) -> int:
    """Runs action(snapshotter) in a child with SDCTR_TEST_KILL_AT; its wait status."""
    pid = os.fork()
    if pid == 0:
        os.environ[devicemapper.KILL_AT] = kill_at
        try:
            action(snap(tmp_path))
        finally:
            os._exit(0)
    return os.waitpid(pid, 0)[1]


def agree(tmp_path: Path, pool: FakePool) -> tuple[list[int], list[int]]:
    s = snap(tmp_path)
    s.up()  # recovery
    devices = s.devices()
    assert all(d.initialized and not d.deleted for d in devices)
    record = json.loads(s.record_path.read_text())
    assert record["open"] is None and record["transaction_id"] == pool.state()["tid"]
    return sorted(pool.state()["devices"]), sorted(d.device_id for d in devices)


@pytest.mark.parametrize("step", CREATE_STEPS)
def test_a_create_killed_at_any_step_is_undone_or_finished(pool: FakePool, tmp_path: Path, step: str) -> None:
    base = snap(tmp_path)
    base.up()
    origin = base.load("base")
    assert origin is not None
    status = in_child(tmp_path, step, lambda s: (s.up(), s._new_device("ctr-x", origin, initialized=True)))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    in_pool, in_meta = agree(tmp_path, pool)
    assert in_pool == in_meta
    committed = step == "create:committed"
    assert (snap(tmp_path).load("ctr-x") is not None) == committed  # forward only once committed


@pytest.mark.parametrize("step", DELETE_STEPS)
def test_a_delete_killed_at_any_step_is_finished(pool: FakePool, tmp_path: Path, step: str) -> None:
    s = snap(tmp_path)
    s.up()
    origin = s.load("base")
    assert origin is not None
    s._new_device("ctr-x", origin, initialized=True)
    status = in_child(tmp_path, step, lambda c: (c.up(), c._delete(c.load("ctr-x"))))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    in_pool, in_meta = agree(tmp_path, pool)
    assert in_pool == in_meta == [origin.device_id]
    assert snap(tmp_path).load("ctr-x") is None


def test_an_id_the_pool_holds_already_is_skipped(pool: FakePool, tmp_path: Path) -> None:
    s = snap(tmp_path)
    s.up()
    pool.message(lambda st: st["devices"].append(2))  # not ours
    origin = s.load("base")
    assert origin is not None
    dev = s._new_device("ctr-x", origin, initialized=True)
    assert dev.device_id == 3 and sorted(pool.state()["devices"]) == [1, 2, 3]


def test_a_full_pool_refuses_a_snapshot_and_leaks_nothing(pool: FakePool, tmp_path: Path) -> None:
    s = snap(tmp_path)
    s.up()
    origin = s.load("base")
    assert origin is not None
    pool.message(lambda st: st.update(usage=((1, 100), (95, 100), "rw")))
    with pytest.raises(devicemapper.SdctrError, match="is full: data 95% used"):
        s.prepare("x", ())
    in_pool, in_meta = agree(tmp_path, pool)
    assert in_pool == in_meta == [origin.device_id]
