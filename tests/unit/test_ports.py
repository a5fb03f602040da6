"""Published ports as Docker takes them: -p ranges and a container port alone, -P (the image's
exposed ports on free host ports), and `sdctr port`'s lines."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sdctr.cli.networks import port_lines
from sdctr.cli.parser import build_parser
from sdctr.log import SdctrError
from sdctr.net.setup import assign_host_ports
from sdctr.options import RunOptions, run_options
from sdctr.runtime.resolve import published
from sdctr.spec import ContainerSpec, Port

pytestmark = pytest.mark.unit


def flags(*argv: str) -> RunOptions:
    return run_options(vars(build_parser(only="run").parse_args(["run", *argv, "busybox"])))


def test_a_range_publishes_each_port_of_it() -> None:
    assert flags("-p", "8000-8002:80-82/udp", "-p", "9000:90").publish == (
        Port(8000, 80, "udp"), Port(8001, 81, "udp"), Port(8002, 82, "udp"), Port(9000, 90))
    assert flags("-p", "127.0.0.1:8000-8001:80-81").publish == (
        Port(8000, 80, "tcp", "127.0.0.1"), Port(8001, 81, "tcp", "127.0.0.1"))
    # a YAML list item is a range too
    assert run_options({"image": "busybox", "ports": ["8000-8001:80-81"]}, yaml=True).publish == (
        Port(8000, 80), Port(8001, 81))


@pytest.mark.parametrize(("value", "message"), [
    ("8000-8002:80-81", "the host range and the container range differ in length"),
    ("8010-8000:80-90", "the range 8010-8000 ends before it starts"),
    ("8000-70000:80-62080", "port 70000 is outside 1..65535"),
    ("8000-8001:80-81", "host port 8001/tcp is published twice"),
])
def test_bad_ranges_are_refused_by_name(value: str, message: str) -> None:
    with pytest.raises(SdctrError, match=message):
        flags("-p", value, *(["-p", "8001:99"] if "twice" in message else []))


def test_a_container_port_alone_and_publish_all_ask_for_free_host_ports() -> None:
    assert flags("-p", "80").publish == (Port(0, 80),)
    assert flags("-p", "127.0.0.1::53/udp").publish == (Port(0, 53, "udp", "127.0.0.1"),)
    options = flags("-P", "-p", "8080:80")
    assert options.publish_all
    # the image's exposed ports that -p does not publish (80/tcp is; sctp is not ours to publish)
    assert published(options, ("443/tcp", "53/udp", "80/tcp", "9/sctp")) == (
        Port(8080, 80), Port(0, 443), Port(0, 53, "udp"))
    assert published(flags(), ("443/tcp",)) == ()
    with pytest.raises(SdctrError, match="--publish-all needs a bridge network"):
        flags("-P", "--network", "none")


def test_free_host_ports_are_free_and_not_another_containers() -> None:
    other = ContainerSpec(id="a" * 64, name="a", image="i", image_id="x", command=("c",),
                          ports=(Port(8080, 80),))
    spec = ContainerSpec(id="b" * 64, name="b", image="i", image_id="x", command=("c",),
                         ports=(Port(8081, 81), Port(0, 80), Port(0, 53, "udp")))
    ports = assign_host_ports(spec, [other]).ports
    assert ports[0] == Port(8081, 81) and [p.container_port for p in ports] == [81, 80, 53]
    assert all(p.host_port > 1024 for p in ports) and len({p.host_port for p in ports[1:]}) == 2
    with socket.socket() as s:  # free: it can be bound
        s.bind(("0.0.0.0", ports[1].host_port))
    assert assign_host_ports(other, []) is other


def test_port_prints_as_docker_port_does() -> None:
    ports = (Port(8443, 443), Port(8080, 80, "tcp", "127.0.0.1"), Port(5353, 53, "udp"))
    assert port_lines(ports, "web") == ["53/udp -> 0.0.0.0:5353", "80/tcp -> 127.0.0.1:8080",
                                        "443/tcp -> 0.0.0.0:8443"]
    assert port_lines(ports, "web", "80") == ["127.0.0.1:8080"]
    assert port_lines(ports, "web", "53/udp") == ["0.0.0.0:5353"]
    with pytest.raises(SdctrError, match=r"^no public port '53/tcp' published for web$") as e:
        port_lines(ports, "web", "53")
    assert e.value.status == 1


def test_a_port_another_container_publishes_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    from sdctr.net import setup

    offered = iter([8080, 8080, 40000])  # what the kernel hands out for port 0, in turn

    class Socket(socket.socket):
        def getsockname(self) -> tuple[str, int]:
            return ("0.0.0.0", next(offered))
    monkeypatch.setattr(setup.socket, "socket", Socket)
    other = ContainerSpec(id="a" * 64, name="a", image="i", image_id="x", command=("c",),
                          ports=(Port(8080, 80),))
    spec = ContainerSpec(id="b" * 64, name="b", image="i", image_id="x", command=("c",), ports=(Port(0, 80),))
    assert assign_host_ports(spec, [other]).ports == (Port(40000, 80),)


def test_network_ls_and_inspect_show_the_networks_there_are(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    import json

    from sdctr.cli import networks
    from sdctr.net import ipam

    with ipam.Leases.open(tmp_path / "networks" / "bridge") as leases:
        leases.lease("a" * 64, ipam.Subnet.parse("10.89.0.0/16"), ipam.parse_ip("10.89.0.1"))
    args = argparse.Namespace(root=str(tmp_path), quiet=False, format=None, networks=["bridge", "none"])
    networks.cmd_network_ls(args)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [ln.split()[1:] for ln in lines[1:]] == [["bridge", "bridge", "local"], ["host", "host", "local"],
                                                    ["none", "null", "local"]]
    template = "{{.Name}} {{.Driver}}"
    networks.cmd_network_ls(argparse.Namespace(root=str(tmp_path), quiet=False, format=template))
    assert capsys.readouterr().out == "bridge bridge\nhost host\nnone null\n"  # Docker's fields
    networks.cmd_network_inspect(args)
    bridge, none = json.loads(capsys.readouterr().out)
    assert bridge["IPAM"]["Config"] == [{"Subnet": "10.89.0.0/16", "Gateway": "10.89.0.1"}]
    assert bridge["Containers"] == {"a" * 64: {"Name": "", "MacAddress": "02:42:0a:59:00:02",
                                               "IPv4Address": "10.89.0.2/16", "IPv6Address": ""}}
    assert bridge["Options"] == {"com.docker.network.bridge.name": "sdctr0"} and bridge["Id"][:12] in lines[1]
    assert none["Driver"] == "null" and none["Containers"] == {}
    with pytest.raises(SdctrError, match=r"^no such network: web$") as e:
        networks.cmd_network_inspect(argparse.Namespace(root=str(tmp_path), format=None, networks=["web"]))
    assert e.value.status == 1


def test_ps_shows_a_running_containers_published_ports_as_docker() -> None:
    from sdctr.cli.containers import ps_row

    spec = ContainerSpec(id="b" * 64, name="b", image="i", image_id="x", command=("c",),
                         ports=(Port(8443, 443, "tcp", "127.0.0.1"), Port(8080, 80), Port(5353, 53, "udp")))
    assert ps_row(spec, "inactive", {"finished_at": 1})["Ports"] == ""
    # (paused is read from the unit's freezer, which a unit test has none of: not paused)
    assert ps_row(spec, "active", {})["Ports"] == (
        "0.0.0.0:5353->53/udp, 0.0.0.0:8080->80/tcp, 127.0.0.1:8443->443/tcp")
