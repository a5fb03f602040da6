"""The thin driver's root file system in a unit of its own (sdctr-rootfs@<id>.service), outside
the container's device cgroup; the overlay path without it; the thin pool's free-space floor.
The real pool and units are the VM tier's (tests/vm/test_thin_run.py)."""

from __future__ import annotations

import configparser
import json
from pathlib import Path
from typing import Any

import pytest

from sdctr import config, state
from sdctr.log import SdctrError
from sdctr.main import unit_command
from sdctr.paths import Paths
from sdctr.runtime import hooks, lifecycle
from sdctr.spec import ContainerSpec
from sdctr.storage import devicemapper, dmsetup
from sdctr.systemd.properties import Host, properties, rootfs_unit, unit_file

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "units/sdctr-rootfs@.service"
CID = "d" * 64
SDCTR = ["/usr/bin/sdctr"]


def spec(**kw: Any) -> ContainerSpec:
    base: dict[str, Any] = dict(id=CID, name="thin", image="busybox", image_id="0" * 64,
                                command=("true",), storage="devicemapper", layers=("sha256:" + "1" * 64,))
    base.update(kw)
    return ContainerSpec(**base)


def as_dict(props: list[Any]) -> dict[str, Any]:
    return {name: value for name, _, value in props}


# --- the container's unit ---------------------------------------------------------------------

@pytest.mark.parametrize("systemd", [219, 252])
def test_a_thin_container_requires_its_rootfs_unit_and_runs_no_storage_hook(systemd: int) -> None:
    unit = rootfs_unit(CID)
    p = as_dict(properties(spec(), Host(2, systemd), SDCTR, rootfs_unit=unit))
    assert unit == f"sdctr-rootfs@{CID}.service"
    assert p["Requires"] == [unit] and p["After"] == [unit]
    assert "ExecStartPre" not in p  # dmsetup would get EPERM in the container's device cgroup
    assert p["DevicePolicy"] == "closed"
    allowed = dict(p["DeviceAllow"])
    assert not [d for d in allowed if "mapper" in d or (d.startswith("block-") and "r" in allowed[d])]


def test_the_unit_file_names_the_rootfs_unit_in_its_unit_section() -> None:
    text = unit_file(properties(spec(), Host(1, 0), SDCTR, rootfs_unit=rootfs_unit(CID)))
    unit_section = text.split("[Service]")[0]
    assert f"Requires=sdctr-rootfs@{CID}.service\n" in unit_section
    assert f"After=sdctr-rootfs@{CID}.service\n" in unit_section
    assert "ExecStartPre" not in text


def test_overlay_keeps_its_exec_start_pre_and_no_extra_unit() -> None:
    p = as_dict(properties(spec(storage="overlay"), Host(2, 252), SDCTR, prestart=["/bin/mount", "x"]))
    assert p["ExecStartPre"] == [("/bin/mount", ["/bin/mount", "x"], False)]
    assert "Requires" not in p and "After" not in p


def test_lifecycle_gives_a_thin_container_its_rootfs_unit() -> None:
    p = as_dict(lifecycle.unit_props(Paths.from_root(None), spec(), Host(2, 252)))
    assert p["Requires"] == [rootfs_unit(CID)]
    assert "ExecStartPre" not in p
    # the poststop hook still records the exit; the storage is the rootfs unit's
    assert p["ExecStopPost"][-1][1][-3:] == ["hook", "poststop", CID]


def test_another_root_is_refused_for_thin_containers(tmp_path: Path) -> None:
    with pytest.raises(SdctrError, match="on /var/lib/sdctr only"):
        lifecycle.unit_props(Paths.from_root(str(tmp_path)), spec(), Host(2, 252))


# --- the template unit --------------------------------------------------------------------------

def test_the_template_activates_outside_the_container_and_in_the_hosts_mount_namespace() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(TEMPLATE)
    unit, service = parser["Unit"], parser["Service"]
    assert service["Type"] == "oneshot" and service["RemainAfterExit"] == "yes"
    assert service["ExecStart"].endswith("-m sdctr hook rootfs-up %i")
    assert service["ExecStop"].endswith("-m sdctr hook rootfs-down %i")
    assert unit["StopWhenUnneeded"] == "yes"  # deactivated when the container stops, however
    # the mount must land where the container's init pivots: no mount namespace of its own
    for key in ("PrivateMounts", "PrivateTmp", "ProtectSystem", "ProtectHome", "MountFlags",
                "PrivateDevices", "DevicePolicy", "RootDirectory", "ReadOnlyPaths", "TemporaryFileSystem"):
        assert key not in service, key


@pytest.mark.parametrize("stage", ["rootfs-up", "rootfs-down"])
def test_the_unit_command_knows_the_rootfs_hooks(stage: str) -> None:
    assert unit_command(["hook", stage, CID]) is not None


# --- the hooks ----------------------------------------------------------------------------------

class FakeSnap:
    name = "devicemapper"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def deactivate(self, cid: str, target: Path) -> None:
        self.calls.append("deactivate")

    def remove(self, cid: str) -> None:
        self.calls.append("remove")

    def reset(self, cid: str) -> None:
        self.calls.append("reset")


@pytest.fixture
def snap(monkeypatch: pytest.MonkeyPatch) -> FakeSnap:
    fake = FakeSnap()
    monkeypatch.setattr(hooks, "snapshotter_of", lambda paths, s: fake)
    return fake


@pytest.mark.parametrize("attached", [False, True])
def test_poststop_leaves_a_thin_rm_container_to_its_rootfs_unit(
        tmp_path: Path, snap: FakeSnap, monkeypatch: pytest.MonkeyPatch, attached: bool) -> None:
    paths = Paths.from_root(str(tmp_path))
    state.save_spec(paths, spec(remove=True, attached=attached))
    monkeypatch.setenv("EXIT_CODE", "exited")
    monkeypatch.setenv("EXIT_STATUS", "3")
    hooks.poststop(paths, CID)
    assert snap.calls == []  # no dmsetup in the container's unit
    assert state.read_status(paths, CID)["exit_code"] == 3  # the record kept, the status in it
    assert not hooks.exit_file(paths, CID).exists()  # the attached run waits for the rootfs unit

    hooks.rootfs_down(paths, CID)
    assert snap.calls == ["deactivate", "remove"]
    assert not paths.container_dir(CID).exists()
    if attached:  # last, with the status poststop recorded
        assert json.loads(hooks.exit_file(paths, CID).read_text())["exit_code"] == 3
    else:
        assert not hooks.exit_file(paths, CID).exists()


def test_rootfs_down_deactivates_a_kept_container_and_resets_an_ephemeral_one(
        tmp_path: Path, snap: FakeSnap) -> None:
    paths = Paths.from_root(str(tmp_path))
    state.save_spec(paths, spec(ephemeral=True))
    hooks.rootfs_down(paths, CID)
    assert snap.calls == ["deactivate", "reset"]
    assert paths.container_dir(CID).exists()


def test_rootfs_down_after_rm_has_nothing_to_do(tmp_path: Path, snap: FakeSnap) -> None:
    assert hooks.rootfs_down(Paths.from_root(str(tmp_path)), CID) == 0
    assert snap.calls == []


# --- the free-space floor -----------------------------------------------------------------------

def test_pool_usage_reads_dmsetup_status(monkeypatch: pytest.MonkeyPatch) -> None:
    line = "0 1048576 thin-pool 7 120/16384 7000/8192 - rw discard_passdown queue_if_no_space - 1024"
    monkeypatch.setattr(dmsetup, "status", lambda name: line.split())
    assert dmsetup.pool_usage("p") == ((120, 16384), (7000, 8192), "rw")
    monkeypatch.setattr(dmsetup, "status", lambda name: "0 1048576 thin-pool Fail".split())
    assert dmsetup.pool_usage("p")[2] == "Fail"


@pytest.mark.parametrize(("usage", "refused"), [
    (((10, 100), (89, 100), "rw"), None),
    (((10, 100), (91, 100), "rw"), "data 91% used"),
    (((95, 100), (10, 100), "rw"), "metadata 95% used"),
    (((10, 100), (10, 100), "out_of_data_space"), "out_of_data_space mode"),
])
def test_a_new_snapshot_is_refused_below_the_floor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   usage: Any, refused: str | None) -> None:
    d = devicemapper.DeviceMapperSnapshotter(Paths.from_root(str(tmp_path)), config.DeviceMapper())
    monkeypatch.setattr(dmsetup, "pool_usage", lambda pool: usage)
    if refused is None:
        d._check_space()
        return
    with pytest.raises(SdctrError, match=refused) as e:
        d._check_space()
    assert "grow the pool" in (e.value.hint or "")


def test_min_free_is_a_setting() -> None:
    doc = {"storage": {"devicemapper": {"min_free": "20%"}}}
    assert config.parse(doc, source="f").storage.devicemapper.min_free == 20
    assert config.parse({}, source="f").storage.devicemapper.min_free == 10
    with pytest.raises(SdctrError, match="min_free"):
        config.parse({"storage": {"devicemapper": {"min_free": "lots"}}}, source="f")
