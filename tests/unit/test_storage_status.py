"""Which driver a container gets and why, the thin pool's space in `sdctr storage status` and
`info`, and containers that keep the driver they recorded when the host's setting changes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from sdctr import config, state, thinhost
from sdctr.cli import manage
from sdctr.paths import Paths
from sdctr.runtime import hooks
from sdctr.spec import ContainerSpec
from sdctr.storage import devicemapper, dmsetup
from sdctr.storage.devicemapper import DeviceMapperSnapshotter
from sdctr.storage.overlay import OverlaySnapshotter

pytestmark = pytest.mark.unit

GB = 1 << 30
# 64 KiB data blocks: 16384 of 65536 used (1 GiB of 4); metadata 4 KiB blocks: 512 of 4096
POOL_STATUS = "0 8388608 thin-pool 9 512/4096 16384/65536 - rw discard_passdown queue_if_no_space - 1024"


def spec(cid: str, storage: str) -> ContainerSpec:
    return ContainerSpec(id=cid * 64, name=f"c{cid}", image="busybox", image_id="0" * 64,
                         command=("true",), storage=storage, layers=("sha256:" + "1" * 64,))


@pytest.fixture
def setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """sdctr.yaml's storage.driver, as a test sets it; dm-thin absent unless a test says so."""
    def write(driver: str) -> None:
        f = tmp_path / "sdctr.yaml"
        f.write_text(f"storage:\n  driver: {driver}\n")
        monkeypatch.setenv("SDCTR_CONFIG", str(f))
    monkeypatch.setattr(thinhost, "usable", lambda: (False, "the kernel has no dm-thin"))
    return write


def test_auto_says_why_it_chose(tmp_path: Path, setting: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    setting("auto")
    assert thinhost.chosen_driver(tmp_path) == ("overlay", "auto: the kernel has no dm-thin")
    monkeypatch.setattr(thinhost, "usable", lambda: (True, "a pool can be made"))
    assert thinhost.chosen_driver(tmp_path) == ("devicemapper", "auto: a pool can be made")
    setting("overlay")
    assert thinhost.chosen_driver(tmp_path) == ("overlay", "storage.driver in sdctr.yaml")


@pytest.mark.parametrize("made", ["devicemapper/pool/data", "devicemapper/pool.json"])
def test_auto_keeps_the_pool_sdctr_made_and_info_says_what_is_wrong(
        tmp_path: Path, setting: Any, monkeypatch: pytest.MonkeyPatch, made: str) -> None:
    """A host whose pool was made under auto, where dm-thin is gone since (a kernel without the
    module): new containers stay beside its images on devicemapper, and `info` says why and what
    is missing, rather than a silent overlay beside a pool that no longer comes up."""
    setting("auto")
    monkeypatch.setattr(thinhost, "container_mark", lambda: None)
    pool = tmp_path / made
    pool.parent.mkdir(parents=True)
    pool.touch()
    paths = Paths.from_root(str(tmp_path))
    doc = manage.storage_doc(paths, [])
    assert doc["Driver"] == "devicemapper"
    assert doc["DriverReason"] == (f"auto: sdctr made a thin pool here ({pool}), kept though the kernel "
                                   "has no dm-thin")


def test_a_pool_in_a_container_is_not_kept(tmp_path: Path, setting: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool made in a container is the host kernel's: the mistake usable() refuses, not a choice."""
    setting("auto")
    monkeypatch.setattr(thinhost, "container_mark", lambda: "/.dockerenv")
    (tmp_path / "devicemapper/pool").mkdir(parents=True)
    (tmp_path / "devicemapper/pool/data").touch()
    assert thinhost.chosen_driver(tmp_path) == ("overlay", "auto: the kernel has no dm-thin")


def test_auto_makes_a_pool_only_on_a_host_with_dm_thin_its_devices_and_dmsetup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test host on a kernel with dm-thin, given the host's /dev, made a pool in the host
    kernel's device-mapper and failed to mount it (the VM tier): a container takes overlay. So do
    a kernel without dm-thin and a host without the devices or dmsetup; each says why."""

    mark, module = tmp_path / "container", tmp_path / "dm_thin_pool"
    control, loop = tmp_path / "control", tmp_path / "loop-control"
    monkeypatch.setattr(thinhost, "CONTAINER_MARKS", (str(mark),))
    monkeypatch.setattr(thinhost, "THIN_MODULE", str(module))
    monkeypatch.setattr(thinhost, "MAPPER_CONTROL", str(control))
    monkeypatch.setattr(thinhost, "LOOP_CONTROL", str(loop))
    monkeypatch.setattr(thinhost, "module_installed", lambda: False)
    assert thinhost.usable() == (False, "the kernel has no dm-thin (no dm_thin_pool module, loaded "
                                        "or installed)")
    module.mkdir()
    usable, why = thinhost.usable()
    assert not usable and f"{control} cannot be opened (No such file or directory)" in why
    control.touch()  # a regular file opens read-write as the device node does
    usable, why = thinhost.usable()
    assert not usable and f"{loop} cannot be opened" in why and "no loop devices" in why
    loop.touch()
    monkeypatch.setattr(thinhost, "TOOL_PATH", str(tmp_path))
    assert thinhost.usable() == (False, "the kernel has dm-thin, but dmsetup is not installed "
                                        "(package device-mapper)")
    (tmp_path / "dmsetup").touch(mode=0o755)
    assert thinhost.usable()[0]
    mark.write_text("sdctr-testhost\n")
    assert thinhost.usable() == (False, f"this is a container ({mark}): device-mapper is the host "
                                        "kernel's, not the container's")


@pytest.mark.parametrize(("recorded", "setting_now"),
                         [("devicemapper", "overlay"), ("overlay", "devicemapper")])
def test_a_container_keeps_the_driver_it_recorded_when_the_setting_changes(
        tmp_path: Path, setting: Any, recorded: str, setting_now: str) -> None:
    """Start, stop and rm go through hooks.snapshotter_of and rootfs_in_own_unit, which read the
    record, never the configuration."""
    setting(setting_now)
    paths = Paths.from_root(str(tmp_path / "root"))
    s = spec("a", recorded)
    state.save_spec(paths, s)
    again = state.find_by_id(paths, s.id)
    snap = hooks.snapshotter_of(paths, again)
    assert snap.name == recorded
    assert isinstance(snap, DeviceMapperSnapshotter if recorded == "devicemapper" else OverlaySnapshotter)
    assert hooks.rootfs_in_own_unit(again) is (recorded == "devicemapper")


def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, active: bool) -> DeviceMapperSnapshotter:
    d = DeviceMapperSnapshotter(Paths.from_root(str(tmp_path / "root")), config.DeviceMapper())
    d.meta_dir.mkdir(parents=True)
    d._save(devicemapper.Device("base", 1, 1, 10 * GB, initialized=True, filesystem="xfs"))
    monkeypatch.setattr(dmsetup, "exists", lambda name: active)
    monkeypatch.setattr(dmsetup, "status", lambda name: POOL_STATUS.split())
    return d


def test_the_pool_status_has_data_and_metadata_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = dict(pool(tmp_path, monkeypatch, active=True).status())
    assert rows["Data Space Used"] == GB and rows["Data Space Total"] == 4 * GB
    assert rows["Data Space Available"] == 3 * GB
    assert rows["Metadata Space Used"] == 512 * 4096 and rows["Metadata Space Total"] == 4096 * 4096
    assert rows["Backing Filesystem"] == "xfs" and rows["Base Device Size"] == 10 * GB
    assert rows["Thin Pool Minimum Free Space"] == "10%" and rows["Pool Status"] == "rw"


def test_a_pool_that_is_not_up_is_said_to_be_so_and_not_brought_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = dict(pool(tmp_path, monkeypatch, active=False).status())
    assert rows["Pool Status"].startswith("not made yet")
    assert "Data Space Used" not in rows


def test_storage_status_shows_the_chosen_driver_and_the_recorded_ones(
        tmp_path: Path, setting: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    setting("overlay")
    d = pool(tmp_path, monkeypatch, active=True)
    for cid, driver in (("a", "devicemapper"), ("b", "overlay"), ("c", "overlay")):
        state.save_spec(d.paths, spec(cid, driver))
    args = argparse.Namespace(root=str(d.paths.root), format="table")
    assert manage.cmd_storage_status(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["Storage Driver: overlay", " Chosen By: storage.driver in sdctr.yaml"]
    assert " Containers By Driver: devicemapper 1, overlay 2" in out
    assert "Storage Driver (in use): devicemapper" in out  # the old containers' pool, still shown
    assert " Data Space Used: 1.07GB" in out and " Metadata Space Total: 16.8MB" in out

    assert manage.cmd_storage_status(argparse.Namespace(root=str(d.paths.root), format="json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["Driver"] == "overlay" and doc["ContainersByDriver"] == {"devicemapper": 1, "overlay": 2}
    assert dict(doc["OtherDriverStatus"]["devicemapper"])["Data Space Total"] == 4 * GB


def test_diff_and_commit_refuse_a_thin_container_in_one_line(tmp_path: Path) -> None:
    """They read overlay's writable layer directly: a thin container has none to read, so they
    refuse with sdctr's usage status (125) instead of misreading anything."""
    from sdctr.log import EXIT_SDCTR, SdctrError
    from sdctr.runtime import changes

    paths = Paths.from_root(str(tmp_path / "root"))
    s = spec("a", "devicemapper")
    state.save_spec(paths, s)
    with pytest.raises(SdctrError, match="'devicemapper' keeps no separate writable layer") as e:
        changes.layers(paths, s)
    assert e.value.status == EXIT_SDCTR and "\n" not in str(e.value)


def test_inspect_names_the_driver_the_container_recorded(tmp_path: Path, setting: Any) -> None:
    from sdctr.runtime import lifecycle

    setting("overlay")
    paths = Paths.from_root(str(tmp_path / "root"))
    for cid, driver in (("a", "devicemapper"), ("b", "overlay")):
        s = spec(cid, driver)
        state.save_spec(paths, s)
        assert lifecycle.describe(paths, s, {"ActiveState": "inactive"})["Driver"] == driver


class _Sd:
    def active_states(self) -> dict[str, str]:
        return {}


def test_system_check_finds_a_thin_record_without_its_device_and_a_device_without_a_record(
        tmp_path: Path, setting: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Invariant 3 for the thin driver, read from its metadata (no pool needed to report)."""
    from sdctr.cli import system

    setting("devicemapper")
    d = pool(tmp_path, monkeypatch, active=True)
    kept = spec("a", "devicemapper")
    state.save_spec(d.paths, kept)  # its device was never made (or was lost)
    stray = "c" * 64
    d._save(devicemapper.Device(devicemapper.container_name(stray), 9, 2, GB, initialized=True))
    removed: list[str] = []
    monkeypatch.setattr(DeviceMapperSnapshotter, "remove", lambda self, cid: removed.append(cid))
    found = {p.what: p for p in system.inconsistencies(d.paths, _Sd())}
    assert any("ca" in w and "snapshot is missing" in w for w in found), found
    stray_problem = [p for w, p in found.items() if f"device ctr-{stray[:12]} has no record" in w]
    assert len(stray_problem) == 1, found
    assert stray_problem[0].repair is not None
    stray_problem[0].repair()
    assert removed == [stray]
    d._save(devicemapper.Device(devicemapper.container_name(kept.id), 10, 3, GB, initialized=True))
    assert not [w for w in (p.what for p in system.inconsistencies(d.paths, _Sd())) if "missing" in w]
