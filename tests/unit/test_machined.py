"""Containers as machines of systemd-machined: where the host has it, the init registers its
container (busctl, once the command runs) by a name machined takes."""

from __future__ import annotations

import pytest

from sdctr.init.standard import machine_argv, machine_name
from sdctr.spec import ContainerSpec

pytestmark = pytest.mark.unit

CID = "0123456789abcdef" * 4


def spec(name: str = "web") -> ContainerSpec:
    return ContainerSpec(id=CID, name=name, image="busybox", image_id="", command=("sleep", "1"))


def test_register_machine_call() -> None:
    argv = machine_argv(spec(), "/usr/bin/busctl", 4321, "/run/sdctr/x/rootfs")
    assert argv[:9] == ["/usr/bin/busctl", "--quiet", "call", "org.freedesktop.machine1",
                        "/org/freedesktop/machine1", "org.freedesktop.machine1.Manager", "RegisterMachine",
                        "sayssus", "web"]
    # its id is the container's first 16 bytes; class container; leader the container's PID 1
    assert argv[9:26] == ["16", *(str(b) for b in bytes.fromhex(CID[:32]))]
    assert argv[26:] == ["sdctr", "container", "4321", "/run/sdctr/x/rootfs"]


@pytest.mark.parametrize(("name", "machine"), [
    ("web", "web"), ("nimble_ritchie", "nimble-ritchie"), ("a.b-c", "a.b-c"),
    ("_x", CID[:12]), ("x" * 65, CID[:12])])
def test_machine_names_are_host_names(name: str, machine: str) -> None:
    assert machine_name(spec(name)) == machine
