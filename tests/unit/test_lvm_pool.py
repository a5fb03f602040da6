"""The devicemapper driver over an LVM thin pool (issue 12): storage.devicemapper.thinpool, the
lvm commands `sdctr storage setup --lvm VG` runs and its refusals, the pool's origin in `storage
status`, and what the driver never does to an LVM pool (loop files, removing it). The VM tier
(tests/vm/test_thin_lvm.py) runs it against LVM and a real pool."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from sdctr import config
from sdctr.cli import storage as storage_cli
from sdctr.log import EXIT_SDCTR, SdctrError
from sdctr.paths import Paths
from sdctr.storage import devicemapper, dmsetup, lvm
from sdctr.storage.devicemapper import DeviceMapperSnapshotter

pytestmark = pytest.mark.unit

GB = 1 << 30
MB = 1 << 20
POOL = lvm.Pool("vg-0", "sdctr-pool")
# what lvs prints for a pool nobody has used, and one LVM has made a thin volume in
UNUSED = "  Hx1|thin-pool|0|0|active|1073741824|4194304|524288\n"
LVM_USED = "  Hx2|thin-pool|1|1|active|209715200|4194304|65536\n"
# an LVM pool's status and table: 512 KiB blocks (1024 sectors), 2048 of them, 256 used
LVM_STATUS = "0 2097152 thin-pool 3 120/1024 256/2048 - rw discard_passdown queue_if_no_space - 256"
LVM_TABLE = "0 2097152 thin-pool 253:0 253:1 1024 0 1 skip_block_zeroing"


# --- the setting ---------------------------------------------------------------------------------

def test_thinpool_is_a_vg_slash_lv_name() -> None:
    doc = {"storage": {"devicemapper": {"thinpool": "vg-0/sdctr-pool"}}}
    assert config.parse(doc, source="f").storage.devicemapper.thinpool == "vg-0/sdctr-pool"
    assert config.parse({}, source="f").storage.devicemapper.thinpool == ""
    for bad in ("/dev/mapper/vg-pool", "vg", "vg/", "-vg/lv", "vg/lv/x", "vg/l v"):
        with pytest.raises(SdctrError, match=r"storage\.devicemapper\.thinpool: .* is not an LVM thin pool"):
            config.parse({"storage": {"devicemapper": {"thinpool": bad}}}, source="f")


def test_the_dm_name_doubles_dashes_as_lvm_does() -> None:
    assert POOL.dm_name == "vg--0-sdctr--pool" and POOL.text == "vg-0/sdctr-pool"
    assert lvm.Pool.named("vg0/pool") == lvm.Pool("vg0", "pool")


def test_set_storage_appends_to_a_file_of_comments_and_keeps_them(tmp_path: Path) -> None:
    """The shipped sdctr.yaml is all comments: they stay, the setting is appended."""
    f = tmp_path / "sdctr.yaml"
    shipped = "# sdctr's settings\n#storage:\n#  driver: auto\n"
    f.write_text(shipped)
    assert config.set_storage(f, "devicemapper", {"thinpool": "vg0/sdctr-pool"}) is None
    text = f.read_text()
    assert text.startswith(shipped)
    c = config.load(f)
    assert (c.storage.driver, c.storage.devicemapper.thinpool) == ("devicemapper", "vg0/sdctr-pool")
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file renamed, none left


def test_set_storage_keeps_the_other_settings_and_backs_up_comments(tmp_path: Path) -> None:
    f = tmp_path / "sdctr.yaml"
    old = ("# mine\nnetwork:\n  bridge: br9\nstorage:\n  driver: overlay\n"
           "  devicemapper:\n    base_size: 20G\n")
    f.write_text(old)
    backup = config.set_storage(f, "devicemapper", {"thinpool": "vg0/p"})
    assert backup == str(tmp_path / "sdctr.yaml.bak") and Path(backup).read_text() == old
    c = config.load(f)
    assert c.network.bridge == "br9" and c.storage.devicemapper.base_size == 20 * GB
    assert (c.storage.driver, c.storage.devicemapper.thinpool) == ("devicemapper", "vg0/p")


def test_set_storage_refuses_a_broken_file_and_changes_nothing(tmp_path: Path) -> None:
    f = tmp_path / "sdctr.yaml"
    f.write_text("network: [unclosed\n")
    with pytest.raises(SdctrError, match="is not valid YAML"):
        config.set_storage(f, "devicemapper", {"thinpool": "vg0/p"})
    assert f.read_text() == "network: [unclosed\n"
    missing = tmp_path / "etc" / "sdctr.yaml"  # no file yet: made
    config.set_storage(missing, "devicemapper", {"thinpool": "vg0/p"})
    assert config.load(missing).storage.devicemapper.thinpool == "vg0/p"


# --- lvm's command lines and checks --------------------------------------------------------------

def test_lvcreate_is_docker_storage_setups() -> None:
    space = lvm.VGSpace(size=100 * GB, free=80 * GB, extent=4 * MB)
    meta = lvm.metadata_bytes(space.size)
    assert meta == 100 * GB // 1000 // 512 * 512 + 512  # 0.1 % of the group
    assert lvm.metadata_bytes(GB) == 2 * MB  # lvm's floor
    assert lvm.create_command(POOL, lvm.data_size_args("vg-0", "40%FREE", space, meta), meta) == [
        "lvcreate", "-y", "--type", "thin-pool", "--zero", "n", "--chunksize", "512K",
        "--poolmetadatasize", f"{meta // 512}s", "-l", "40%FREE", "--metadataprofile", "sdctr-thinpool",
        "-n", "sdctr-pool", "vg-0"]
    assert lvm.data_size_args("vg-0", "10G", space, meta) == ["-L", f"{10 * GB // 512}s"]
    assert lvm.data_size_args("vg-0", "90%vg", space, meta) == ["-l", "90%VG"]


def test_a_pool_the_group_cannot_hold_is_refused_before_lvcreate() -> None:
    space = lvm.VGSpace(size=2 * GB, free=GB, extent=4 * MB)
    full = r"volume group vg0 has 1\.00 GiB free: a thin pool of 100\.00 GiB"
    with pytest.raises(SdctrError, match=full) as e:
        lvm.data_size_args("vg0", "100G", space, 2 * MB)
    assert e.value.status == EXIT_SDCTR and "vgextend vg0" in (e.value.hint or "")
    with pytest.raises(SdctrError, match="is not a size"):
        lvm.data_size_args("vg0", "lots", space, 2 * MB)
    with pytest.raises(SdctrError, match="not a percentage"):
        lvm.data_size_args("vg0", "0%FREE", space, 2 * MB)


def test_a_pool_lvm_uses_or_that_is_no_pool_is_refused() -> None:
    assert lvm.check_dedicated(POOL, lvm.parse_lvs(UNUSED)).uuid == "Hx1"
    with pytest.raises(SdctrError, match=r"LVM thin pool vg-0/sdctr-pool is LVM's own: it holds 1 thin "
                                         r"volume\(s\) of LVM's \(its transaction id is 1\)"):
        lvm.check_dedicated(POOL, lvm.parse_lvs(LVM_USED))
    with pytest.raises(SdctrError, match="is not a thin pool"):
        lvm.check_dedicated(POOL, lvm.parse_lvs("  Hx3|linear|||active|1073741824||0\n"))
    with pytest.raises(SdctrError, match=r"LVM thin pool vg-0/sdctr-pool \(storage.devicemapper.thinpool\) "
                                         "does not exist"):
        lvm.check_dedicated(POOL, None)


def test_no_lvm_tools_is_said_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setattr(shutil, "which", lambda cmd, path=None: None)
    with pytest.raises(SdctrError, match=r"LVM's tools are not installed \(lvs not found\)") as e:
        lvm.check_tools()
    assert "lvm2" in (e.value.hint or "")


# --- the driver over an LVM pool -----------------------------------------------------------------

class FakeLVM:
    """lvm and dmsetup as the driver sees them: an LVM pool, active or not."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, lvs: str = UNUSED, active: bool = True):
        self.active, self.calls = active, []  # type: ignore[var-annotated]
        monkeypatch.setattr(lvm, "pool_lv", lambda pool: lvm.parse_lvs(lvs).replace(active=self.active))
        monkeypatch.setattr(lvm, "activate", self.activate)
        monkeypatch.setattr(dmsetup, "exists", lambda name: self.active and name == POOL.dm_name)
        monkeypatch.setattr(dmsetup, "status", lambda name: LVM_STATUS.split())
        monkeypatch.setattr(dmsetup, "table", lambda name: LVM_TABLE.split())
        monkeypatch.setattr(dmsetup, "remove", lambda name: self.calls.append(("remove", name)))
        monkeypatch.setattr(dmsetup, "names", lambda: [POOL.dm_name])
        monkeypatch.setattr(devicemapper, "_attach", lambda f: pytest.fail(f"a loop device for {f}"))
        monkeypatch.setattr(devicemapper, "_detach", lambda f: pytest.fail(f"a loop device detached: {f}"))

    def activate(self, pool: lvm.Pool) -> None:
        self.calls.append(("activate", pool.text))
        self.active = True


def thin(tmp_path: Path) -> DeviceMapperSnapshotter:
    settings = config.DeviceMapper(thinpool=POOL.text)
    return DeviceMapperSnapshotter(Paths.from_root(str(tmp_path / "root")), settings)


def test_the_driver_uses_the_lvm_pool_and_never_makes_loop_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeLVM(monkeypatch, active=False)
    d = thin(tmp_path)
    monkeypatch.setattr(d, "_make_base", lambda old: None)
    assert d.pool == "vg--0-sdctr--pool"
    assert dmsetup.thin_table(d.pool, 7, GB) == "0 2097152 thin /dev/mapper/vg--0-sdctr--pool 7"
    d.up()
    assert fake.calls == [("activate", "vg-0/sdctr-pool")]  # activated where LVM had not
    assert list(d.pool_dir.iterdir()) == []  # no data, no metadata file
    assert (d.base / "pool.json").read_text().count("lvm:vg-0/sdctr-pool") == 1
    assert d._record()["transaction_id"] == 3  # the pool's own, taken as it is


def test_an_lvm_pool_lvm_uses_is_refused_at_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeLVM(monkeypatch, lvs=LVM_USED)
    with pytest.raises(SdctrError, match="is LVM's own"):
        thin(tmp_path).up()


def test_a_new_pool_is_refused_while_the_old_one_holds_containers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The metadata names devices of the loop pool: switching would lose them, so it is refused;
    once only the base is left, the LVM pool is taken (the base made again in it)."""
    FakeLVM(monkeypatch)
    d = thin(tmp_path)
    monkeypatch.setattr(d, "_make_base", lambda old: None)
    d.pool_dir.mkdir(parents=True)
    (d.pool_dir / "data").write_text("")  # a loop pool was made here
    d.meta_dir.mkdir(parents=True)
    d._save(devicemapper.Device("base", 1, 1, 10 * GB, initialized=True, filesystem="xfs"))
    d._save(devicemapper.Device("ctr-a", 2, 2, 10 * GB, initialized=True, origin="base"))
    with pytest.raises(SdctrError, match=r"in another pool \(loop\), not in lvm:vg-0/sdctr-pool") as e:
        d.up()
    assert "sdctr rm" in (e.value.hint or "")
    d._json("ctr-a").unlink()
    d.up()
    assert d.load("base") is None  # left in the loop pool; _make_base makes the LVM pool's own


def test_status_shows_the_pools_origin_and_lvms_block_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeLVM(monkeypatch)
    rows = dict(thin(tmp_path).status())
    assert rows["Pool Origin"] == "LVM thin pool vg-0/sdctr-pool" and "Data file" not in rows
    assert rows["Pool Name"] == "vg--0-sdctr--pool" and rows["Pool Blocksize"] == 512 << 10
    assert rows["Data Space Used"] == 256 * (512 << 10) and rows["Data Space Total"] == GB
    loop = dict(DeviceMapperSnapshotter(Paths.from_root(str(tmp_path / "l")), config.DeviceMapper())
                ._origin_rows())
    assert loop["Pool Origin"] == "loop files" and loop["Data file"].endswith("/pool/data")


def test_a_full_lvm_pool_says_lvextend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeLVM(monkeypatch)
    monkeypatch.setattr(dmsetup, "status", lambda name: LVM_STATUS.replace("256/2048", "2000/2048").split())
    with pytest.raises(SdctrError, match="is full: data 97% used") as e:
        thin(tmp_path)._check_space()
    assert "lvextend -L +10G vg-0/sdctr-pool" in (e.value.hint or "")


def test_down_leaves_an_lvm_pool_to_lvm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeLVM(monkeypatch)
    d = thin(tmp_path)
    monkeypatch.setattr(dmsetup, "names", lambda: [POOL.dm_name, d.dm_name("base")])
    d.down()
    assert fake.calls == [("remove", d.dm_name("base"))]  # sdctr's device; not the pool, no loop


# --- sdctr storage setup --lvm -------------------------------------------------------------------

@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`sdctr storage setup` with lvm faked: a 10 GiB group with 8 free, no pool in it yet."""
    conf = tmp_path / "sdctr.yaml"
    monkeypatch.setenv("SDCTR_CONFIG", str(conf))
    made: list[list[str]] = []
    monkeypatch.setattr(lvm, "check_tools", lambda: None)
    monkeypatch.setattr(lvm, "vg_space", lambda vg: lvm.VGSpace(10 * GB, 8 * GB, 4 * MB))
    monkeypatch.setattr(lvm, "pool_lv", lambda pool: lvm.parse_lvs(UNUSED) if made else None)
    monkeypatch.setattr(lvm, "write_profile", lambda: "/etc/lvm/profile/sdctr-thinpool.profile")
    monkeypatch.setattr(lvm, "create",
                        lambda pool, size, meta: made.append(lvm.create_command(pool, size, meta)))

    def run(*argv: str) -> int:
        args = argparse.Namespace(root=str(tmp_path / "root"), lvm="vg0", size="40%FREE", name="sdctr-pool")
        for flag, value in zip(argv[::2], argv[1::2]):
            setattr(args, flag.lstrip("-"), value)
        return storage_cli.cmd_storage_setup(args)
    run.made, run.conf = made, conf  # type: ignore[attr-defined]
    return run


def test_setup_makes_the_pool_and_names_it(setup: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert setup("--size", "1G") == 0
    assert setup.made[0][:6] == ["lvcreate", "-y", "--type", "thin-pool", "--zero", "n"]
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("making LVM thin pool vg0/sdctr-pool: lvcreate -y --type thin-pool")
    assert out[2] == "made LVM thin pool vg0/sdctr-pool: 1024 MiB of data, 4 MiB of metadata, 512 KiB blocks"
    assert out[-1] == (f"wrote {setup.conf}: storage.driver devicemapper, "
                       "storage.devicemapper.thinpool vg0/sdctr-pool")
    c = config.load(setup.conf)
    assert (c.storage.driver, c.storage.devicemapper.thinpool) == ("devicemapper", "vg0/sdctr-pool")
    assert setup() == 0 and len(setup.made) == 1  # again: the pool taken as it is, the file kept
    out = capsys.readouterr().out.splitlines()
    assert "is there already" in out[0] and out[1].endswith("names it already: storage.driver "
                                                             "devicemapper, storage.devicemapper.thinpool "
                                                             "vg0/sdctr-pool")


def test_setup_refuses_when_thin_devices_live_in_another_pool(
        setup: Any, tmp_path: Path) -> None:
    d = DeviceMapperSnapshotter(Paths.from_root(str(tmp_path / "root")), config.DeviceMapper())
    d.meta_dir.mkdir(parents=True)
    d._save(devicemapper.Device("ctr-a", 2, 2, 10 * GB, initialized=True, origin="base"))
    with pytest.raises(SdctrError, match=r"has 1 thin device\(s\) in the loop files under .*: a new pool"):
        setup()
    assert setup.made == [] and not setup.conf.exists()


def test_setup_refuses_a_bad_name_and_a_missing_group_with_125(
        setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SdctrError, match="is not an LVM volume group and LV name"):
        setup("--lvm", "-vg")

    def no_vg(vg: str) -> lvm.VGSpace:
        raise SdctrError(f"volume group {vg} does not exist")
    monkeypatch.setattr(lvm, "vg_space", no_vg)
    with pytest.raises(SdctrError, match="volume group vg0 does not exist") as e:
        setup()
    assert e.value.status == EXIT_SDCTR and setup.made == [] and not setup.conf.exists()


def test_the_parser_has_storage_setup() -> None:
    from sdctr.cli.parser import build_parser

    args = build_parser().parse_args(["storage", "setup", "--lvm", "vg0"])
    assert (args.lvm, args.size, args.name) == ("vg0", "40%FREE", "sdctr-pool")
