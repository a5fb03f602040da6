"""`sdctr update`: only the limits asked for go to the running unit, by the cgroup version's
names, and the record keeps them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from sdctr.cli.parser import build_parser
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
