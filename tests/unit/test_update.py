"""`sdctr update`: only the limits asked for go to the running unit, by the cgroup version's
names, and the record keeps them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from sdctr.cli.parser import build_parser
from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.spec import ContainerSpec, Resources
from sdctr.state import find, save_spec
from sdctr.systemd.properties import Host

pytestmark = pytest.mark.unit


class FakeSystemd:
    sent: ClassVar[list[tuple[str, list[Any], bool]]] = []
    state = "active"
    cgroup = 1

    def host(self, force_unit_file: bool = False) -> Host:
        return Host(self.cgroup, 252)

    def active_state(self, unit: str) -> str:
        return self.state

    def set_properties(self, unit: str, props: list[Any], runtime: bool = True) -> None:
        self.sent.append((unit, props, runtime))


@pytest.mark.parametrize(("cgroup", "state", "expected"), [
    (1, "active", [("MemoryLimit", "t", 128 << 20), ("CPUShares", "t", 256)]),
    (2, "active", [("MemoryMax", "t", 128 << 20), ("CPUWeight", "t", 35)]),
    (1, "inactive", None)])
def test_update(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *,
                cgroup: int, state: str, expected: list[Any] | None) -> None:
    from sdctr.systemd import manager

    paths = Paths.from_root(str(tmp_path))
    spec = save_spec(paths, ContainerSpec(id="b" * 64, name="web", image="busybox", image_id="",
                                          command=("x",), resources=Resources(memory=64 << 20, cpus=0.5)))
    FakeSystemd.sent.clear()
    FakeSystemd.state, FakeSystemd.cgroup = state, cgroup
    monkeypatch.setattr(manager, "Systemd", FakeSystemd)
    args = build_parser().parse_args(["--root", str(tmp_path), "update", "-m", "128m", "-c", "256", "web"])
    assert args.handler(args) == 0
    assert capsys.readouterr().out == "web\n"
    if expected is None:
        assert FakeSystemd.sent == []  # a stopped container: its record alone
    else:
        [(unit, props, runtime)] = FakeSystemd.sent
        # the asked limits alone: no quota, no TasksMax sent again
        assert (unit, sorted(props), runtime) == (spec.unit, sorted(expected), True)
    assert find(paths, "web").resources == Resources(memory=128 << 20, cpu_shares=256, cpus=0.5)


def update(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: ContainerSpec, *argv: str,
           state: str = "active", cgroup: int = 1) -> list[tuple[str, list[Any], bool]]:
    from sdctr.systemd import manager

    save_spec(Paths.from_root(str(tmp_path)), spec)
    FakeSystemd.sent.clear()
    FakeSystemd.state, FakeSystemd.cgroup = state, cgroup
    monkeypatch.setattr(manager, "Systemd", FakeSystemd)
    args = build_parser().parse_args(["--root", str(tmp_path), "update", *argv, spec.name])
    assert args.handler(args) == 0
    return list(FakeSystemd.sent)


def test_a_property_replaces_its_keys_assignments_live(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    given = ("IPAddressDeny=any", "MemoryHigh=1G", "IPAddressDeny=::1")
    spec = ContainerSpec(id="c" * 64, name="web", image="busybox", image_id="", command=("x",),
                         resources=Resources(properties=given))
    [(_, props, runtime)] = update(tmp_path, monkeypatch, spec, "--property", "IPAddressDeny=10.0.0.0/8",
                                      "--property", "BlockIOWeight=500")
    # a list is emptied first: systemd adds to a running unit's list
    assert props == [("IPAddressDeny", "a(iayu)", []), ("IPAddressDeny", "a(iayu)", [(2, b"\x0a\0\0\0", 8)]),
                     ("BlockIOWeight", "t", 500)]
    assert runtime is True  # a transient unit's change lasts as long as the unit
    assert find(Paths.from_root(str(tmp_path)), "web").resources.properties == (
        "MemoryHigh=1G", "IPAddressDeny=10.0.0.0/8", "BlockIOWeight=500")


def test_a_declared_containers_change_is_persistent_running_or_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    spec = ContainerSpec(id="d" * 64, name="db", image="busybox", image_id="", command=("x",), declared=True)
    [(unit, props, runtime)] = update(tmp_path, monkeypatch, spec, "-m", "128m", state="inactive")
    assert (unit, props, runtime) == ("ctr-db.service", [("MemoryLimit", "t", 128 << 20)], False)
    assert "systemctl revert ctr-db.service" in capsys.readouterr().err


def test_v2_swap_follows_the_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ContainerSpec(id="e" * 64, name="web", image="busybox", image_id="", command=("x",),
                         resources=Resources(memory=64 << 20, memory_swap=256 << 20))
    [(_, props, _)] = update(tmp_path, monkeypatch, spec, "-m", "128m", cgroup=2)
    assert sorted(props) == [("MemoryMax", "t", 128 << 20), ("MemorySwapMax", "t", 128 << 20)]


def test_v2_cpuset_blkio_weight_and_swap_are_their_properties(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    spec = ContainerSpec(id="d" * 64, name="web", image="busybox", image_id="", command=("x",),
                         resources=Resources(memory=64 << 20))
    [(_, props, _)] = update(tmp_path, monkeypatch, spec, "--cpuset-cpus", "0-1", "--blkio-weight", "300",
                             "--memory-swap", "96m", cgroup=2)
    assert sorted(props) == [("AllowedCPUs", "ay", b"\x03"), ("IOWeight", "t", 2930),
                             ("MemorySwapMax", "t", 32 << 20)]
    r = find(Paths.from_root(str(tmp_path)), "web").resources
    assert (r.cpuset_cpus, r.blkio_weight, r.memory_swap) == ("0-1", 300, 96 << 20)


def test_v1_blkio_weight_is_live_and_a_stopped_cpuset_is_recorded(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ContainerSpec(id="c" * 64, name="web", image="busybox", image_id="", command=("x",))
    [(_, props, _)] = update(tmp_path, monkeypatch, spec, "--blkio-weight", "300")
    assert props == [("BlockIOWeight", "t", 300)]
    assert update(tmp_path, monkeypatch, spec, "--cpuset-cpus", "1", state="inactive") == []
    assert find(Paths.from_root(str(tmp_path)), "web").resources.cpuset_cpus == "1"


def test_a_flag_replaces_a_property_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ContainerSpec(id="a" * 64, name="web", image="busybox", image_id="", command=("x",),
                         resources=Resources(properties=("BlockIOWeight=800", "MemoryHigh=1G")))
    [(_, props, _)] = update(tmp_path, monkeypatch, spec, "--blkio-weight", "300")
    assert props == [("BlockIOWeight", "t", 300)]  # not 800 after it, which systemd would keep
    assert find(Paths.from_root(str(tmp_path)), "web").resources.properties == ("MemoryHigh=1G",)


@pytest.mark.parametrize(("argv", "message"), [
    (["--property", "LimitNOFILE=10"], "LimitNOFILE is set on the processes as they start"),
    (["--property", "MemoryHihg=1G"], "MemoryHihg is not a property sdctr passes on"),
    (["-m", "512m"], "is above --memory-swap"),
    (["--memory-swap", "32m"], "is above --memory-swap"),
])
def test_what_update_cannot_change_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              argv: list[str], message: str) -> None:
    spec = ContainerSpec(id="f" * 64, name="web", image="busybox", image_id="", command=("x",),
                         resources=Resources(memory=64 << 20, memory_swap=256 << 20))
    with pytest.raises(SdctrError, match=message):
        update(tmp_path, monkeypatch, spec, *argv)
    assert FakeSystemd.sent == []
