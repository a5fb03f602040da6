"""Containers as machines of systemd-machined: where the host has it, the unit registers its
container (busctl, after READY=1) by a name machined takes."""

from __future__ import annotations

import pytest

from sdctr.spec import ContainerSpec
from sdctr.systemd.properties import Host, machine_name, properties, unit_file

pytestmark = pytest.mark.unit

SDCTR = ["/usr/bin/sdctr"]
CID = "0123456789abcdef" * 4


def spec(name: str = "web") -> ContainerSpec:
    return ContainerSpec(id=CID, name=name, image="busybox", image_id="", command=("sleep", "1"))


def test_the_unit_registers_its_container_after_it_is_ready() -> None:
    host = Host(1, 252, busctl="/usr/bin/busctl")
    posts = [v for n, _, v in properties(spec(), host, SDCTR, rootfs="/run/sdctr/x/rootfs")
             if n == "ExecStartPost"]
    assert len(posts) == 1
    path, argv, ignore_failure = posts[0][0]
    assert path == "/usr/bin/busctl" and ignore_failure  # a name taken never fails the start
    assert argv[1:9] == ["--quiet", "call", "org.freedesktop.machine1", "/org/freedesktop/machine1",
                         "org.freedesktop.machine1.Manager", "RegisterMachine", "sayssus", "web"]
    # its id is the container's first 16 bytes; class container; leader the container's PID 1
    assert argv[9:26] == ["16", *(str(b) for b in bytes.fromhex(CID[:32]))]
    assert argv[26:] == ["sdctr", "container", "${MAINPID}", "/run/sdctr/x/rootfs"]
    assert '"${MAINPID}"' in unit_file(properties(spec(), host, SDCTR, rootfs="/r"))


def test_no_registration_without_machined() -> None:
    names = [n for n, _, _ in properties(spec(), Host(1, 252), SDCTR, rootfs="/r")]
    assert "ExecStartPost" not in names


@pytest.mark.parametrize(("name", "machine"), [
    ("web", "web"), ("nimble_ritchie", "nimble-ritchie"), ("a.b-c", "a.b-c"),
    ("_x", CID[:12]), ("x" * 65, CID[:12])])
def test_machine_names_are_host_names(name: str, machine: str) -> None:
    assert machine_name(spec(name)) == machine
