"""Declared containers on the devicemapper driver: the generator's unit requires the container's
rootfs unit (sdctr-rootfs@<id>.service, outside the closed device cgroup) as the transient path's
does (test_rootfs_unit.py), and that rootfs unit gets a drop-in that makes the record first. Which
driver a declared container is on is decided from files alone: its record's, else sdctr.yaml's.
The real pool, boot and removal are the VM tier's (tests/vm/test_thin_reboot.py)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from test_generator import SDCTR, sections

from sdctr import thinhost
from sdctr.options import read_declared
from sdctr.systemd.generator import Renderer, declared_id, generate
from sdctr.systemd.properties import Host, rootfs_unit

pytestmark = pytest.mark.unit

WEB = "image: busybox\ncommand: [sleep, '1000']\nnetwork: none\n"
ID = declared_id("web")
ROOTFS = rootfs_unit(ID)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A declared web.yaml, a state root and an sdctr.yaml of their own."""
    src, root, config = tmp_path / "containers", tmp_path / "root", tmp_path / "sdctr.yaml"
    src.mkdir()
    root.mkdir()
    (src / "web.yaml").write_text(WEB)
    monkeypatch.setenv("SDCTR_CONTAINERS_DIR", str(src))
    monkeypatch.setenv("SDCTR_CONFIG", str(config))
    monkeypatch.delenv("SDCTR_ROOT", raising=False)
    return {"src": src, "root": root, "config": config, "out": tmp_path / "out"}


def set_driver(host: dict[str, Path], driver: str) -> None:
    host["config"].write_text(f"storage:\n  driver: {driver}\n")


def make_record(host: dict[str, Path], driver: str, *, stamp: str | None = None) -> None:
    """web's record as sdctr.runtime.declared leaves it: config.json and the file's digest."""
    record = host["root"] / "containers" / ID
    record.mkdir(parents=True)
    (record / "config.json").write_text(json.dumps({"id": ID, "name": "web", "storage": driver}))
    digest = hashlib.sha256((host["src"] / "web.yaml").read_bytes()).hexdigest()
    (record / "declared.sha256").write_text((stamp or digest) + "\n")


def render(host: dict[str, Path]) -> dict[tuple[str, str], list[str]]:
    r = Renderer(Host(2, 0), SDCTR, root=str(host["root"]))
    source = str(host["src"] / "web.yaml")
    return sections(r.unit(read_declared(source), source))


def assert_thin_unit(keys: dict[tuple[str, str], list[str]]) -> None:
    assert ROOTFS in keys[("Unit", "Requires")], keys.get(("Unit", "Requires"))
    assert ROOTFS in keys[("Unit", "After")], keys.get(("Unit", "After"))
    # nothing of the storage in the container's own unit: its device cgroup is closed
    assert not [c for c in keys.get(("Service", "ExecStartPre"), []) if " hook declare " in f"{c} "]
    assert keys[("Service", "DevicePolicy")] == ["closed"]
    assert keys[("Service", "ExecStart")] == [f"/usr/bin/sdctr init {ID}"]


def test_a_declared_container_on_a_devicemapper_host_requires_its_rootfs_unit(host: dict[str, Path]) -> None:
    set_driver(host, "devicemapper")
    assert_thin_unit(render(host))


def test_auto_picks_devicemapper_where_this_host_has_a_thin_pool(
        host: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Even where usable() says no, as it may at boot before kmod-static-nodes made
    /dev/mapper/control; `run` and `info` decide the same (sdctr.thinhost.chosen_driver)."""
    monkeypatch.setattr(thinhost, "usable", lambda: (False, "no /dev/mapper/control yet"))
    monkeypatch.setattr(thinhost, "container_mark", lambda: None)
    set_driver(host, "auto")
    assert ("Unit", "Requires") not in render(host) or ROOTFS not in render(host)[("Unit", "Requires")]
    pool = host["root"] / "devicemapper/pool"
    pool.mkdir(parents=True)
    (pool / "data").touch()
    assert_thin_unit(render(host))
    assert thinhost.chosen_driver(host["root"])[0] == "devicemapper"


def test_a_broken_sdctr_yaml_gives_overlay_and_the_hook_says_why(host: dict[str, Path]) -> None:
    host["config"].write_text("storage: [\n")
    keys = render(host)
    assert keys[("Service", "ExecStartPre")][0] == "/usr/bin/sdctr hook declare web"


def test_the_records_driver_wins_over_a_changed_setting(host: dict[str, Path]) -> None:
    """A container made on devicemapper stays there after storage.driver became overlay (its
    record says so, as a transient container's does): its unit keeps the rootfs unit."""
    set_driver(host, "overlay")
    make_record(host, "devicemapper")
    assert_thin_unit(render(host))


def test_an_edited_file_is_remade_on_todays_driver(host: dict[str, Path]) -> None:
    set_driver(host, "overlay")
    make_record(host, "devicemapper", stamp="0" * 64)  # made from another version of the file
    keys = render(host)
    assert ROOTFS not in keys.get(("Unit", "Requires"), [])
    assert keys[("Service", "ExecStartPre")][0] == "/usr/bin/sdctr hook declare web"


def test_overlay_keeps_the_declare_hook_and_gets_no_rootfs_unit(host: dict[str, Path]) -> None:
    set_driver(host, "overlay")
    keys = render(host)
    assert keys[("Service", "ExecStartPre")][0] == "/usr/bin/sdctr hook declare web"
    assert not [u for u in keys.get(("Unit", "Requires"), []) if u.startswith("sdctr-rootfs@")]
    from sdctr.systemd.generator import storage_of

    assert storage_of("web", str(host["src"] / "web.yaml"), str(host["root"])) == "overlay"


def test_the_generator_gives_the_rootfs_unit_the_record_and_the_pool_first(
        host: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    set_driver(host, "devicemapper")
    monkeypatch.setenv("SDCTR_ROOT", str(host["root"]))
    out = host["out"]
    assert generate(str(host["src"]), str(out), Renderer(Host(2, 0), SDCTR)) == []
    assert_thin_unit(sections((out / "ctr-web.service").read_text()))
    assert (out / "multi-user.target.wants/ctr-web.service").is_symlink()  # it starts at boot
    drop_in = sections((out / f"{ROOTFS}.d/50-sdctr-declared.conf").read_text())
    assert drop_in[("Service", "ExecStartPre")] == ["/usr/bin/sdctr hook declare-rootfs web"]
    assert drop_in[("Unit", "Wants")] == ["sdctr-thinpool.service"]
    assert "sdctr-thinpool.service" in drop_in[("Unit", "After")][0].split()
    assert drop_in[("Unit", "SourcePath")] == [str(host["src"] / "web.yaml")]


def test_no_rootfs_drop_in_for_an_overlay_container(host: dict[str, Path]) -> None:
    set_driver(host, "overlay")
    out = host["out"]
    assert generate(str(host["src"]), str(out), Renderer(Host(2, 0), SDCTR, root=str(host["root"]))) == []
    assert not list(out.glob("sdctr-rootfs@*"))


def test_the_rootfs_unit_template_reads_the_env_file_its_drop_in_writes() -> None:
    """ExecStartPre writes rootfs.env; systemd reads an EnvironmentFile= before each state's
    command (systemd.exec(5)), so ExecStart's rootfs.sh finds it on the first start."""
    template = (Path(__file__).resolve().parents[2] / "units/sdctr-rootfs@.service").read_text()
    assert "EnvironmentFile=-/var/lib/sdctr/containers/%i/rootfs.env" in template


def test_the_declare_rootfs_hook_is_a_stage_the_unit_can_run() -> None:
    from sdctr.main import HOOK_STAGES

    assert "declare-rootfs" in HOOK_STAGES


def test_a_new_record_is_on_the_driver_its_unit_was_made_for(host: dict[str, Path]) -> None:
    """The rootfs unit's hook makes it on devicemapper; the container's own hook never on a driver
    its closed device cgroup could not activate, whatever storage.driver says by then."""
    from sdctr.paths import Paths
    from sdctr.runtime.declared import _storage

    paths = Paths.from_root(str(host["root"]))
    set_driver(host, "devicemapper")
    assert _storage(paths, True) == "devicemapper"
    assert _storage(paths, False) == "overlay"
    set_driver(host, "overlay")
    assert _storage(paths, False) == "overlay"


def test_the_containers_own_hook_refuses_a_thin_record_and_says_to_reload(host: dict[str, Path]) -> None:
    """A unit generated while /var was not mounted (no record seen) on an auto host: its
    `hook declare` finds a devicemapper record and says what to do, before any dmsetup."""
    from sdctr import state
    from sdctr.log import SdctrError
    from sdctr.paths import Paths
    from sdctr.runtime.declared import STAMP, hook
    from sdctr.spec import ContainerSpec

    paths = Paths.from_root(str(host["root"]))
    state.save_spec(paths, ContainerSpec(id=ID, name="web", image="busybox", image_id="0" * 64,
                                         command=(), storage="devicemapper",
                                         layers=("sha256:" + "1" * 64,), declared=True))
    digest = hashlib.sha256((host["src"] / "web.yaml").read_bytes()).hexdigest()
    (paths.container_dir(ID) / STAMP).write_text(digest + "\n")
    with pytest.raises(SdctrError, match="without its rootfs unit") as e:
        hook(paths, "web")
    assert "systemctl daemon-reload" in (e.value.hint or "")


def generate_systemd(*args: str) -> None:
    from sdctr.cli.parser import run

    assert run(["generate", "systemd", *args]) == 0


def tree(top: Path) -> dict[str, str]:
    return {str(p.relative_to(top)): p.read_text() for p in sorted(top.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def test_generate_systemd_names_the_drop_in_a_thin_unit_needs_and_files_writes_it(
        host: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    """Installed by hand, the unit alone would require a rootfs unit with no record to activate:
    stdout stays the one unit (`> ctr-web.service`), a note names the drop-in, and --files writes
    the files the generator writes, laid out as in /etc/systemd/system."""
    set_driver(host, "devicemapper")
    monkeypatch.setenv("SDCTR_ROOT", str(host["root"]))
    generate(str(host["src"]), str(host["out"]))
    by_generator = tree(host["out"])
    drop_in = f"{ROOTFS}.d/50-sdctr-declared.conf"
    assert sorted(by_generator) == ["ctr-web.service", drop_in]

    generate_systemd("web")
    printed = capsys.readouterr()
    assert printed.out == by_generator["ctr-web.service"]
    assert drop_in in printed.err and "sdctr generate systemd --files web" in printed.err

    here = tmp_path / "etc-systemd-system"
    here.mkdir()
    monkeypatch.chdir(here)
    umask = os.umask(0o022)
    try:
        generate_systemd("--files", "web")
    finally:
        os.umask(umask)
    assert tree(here) == by_generator
    assert capsys.readouterr().out.split() == [str(here / "ctr-web.service"), str(here / drop_in)]
    assert oct((here / drop_in).stat().st_mode & 0o777) == oct(0o644)


def test_generate_systemd_of_an_overlay_container_is_its_unit_alone(
        host: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    set_driver(host, "overlay")
    monkeypatch.setenv("SDCTR_ROOT", str(host["root"]))
    generate_systemd("web")
    printed = capsys.readouterr()
    assert printed.out.startswith("# Made by sdctr-generator") and printed.err == ""
    monkeypatch.chdir(tmp_path)
    generate_systemd("-f", str(host["src"] / "web.yaml"))
    assert (tmp_path / "ctr-web.service").read_text() == printed.out
    assert not list(tmp_path.glob("sdctr-rootfs@*"))
