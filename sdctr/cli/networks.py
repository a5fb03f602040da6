"""Verbs about containers' networks: `port` (a container's published ports, as `docker port`
prints them)."""

from __future__ import annotations

import argparse

from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.state import find

TYPE_CHECKING = False  # typing costs ~3 ms to import
if TYPE_CHECKING:
    from sdctr.spec import Port


def paths_of(args: argparse.Namespace) -> Paths:
    return Paths.from_root(args.root)


def port_lines(ports: tuple[Port, ...], name: str, wanted: str | None = None) -> list[str]:
    """`80/tcp -> 0.0.0.0:8080` per mapping, by container port; with `wanted` ("80", "80/udp"),
    that port's host addresses alone, and an error naming it if it has none."""
    ordered = sorted(ports, key=lambda p: (p.container_port, p.proto, p.host_ip, p.host_port))
    if wanted is None:
        return [f"{p.container_port}/{p.proto} -> {p.host_ip or '0.0.0.0'}:{p.host_port}" for p in ordered]
    number, _, proto = wanted.partition("/")
    proto = proto or "tcp"
    if not number.isdigit() or proto not in ("tcp", "udp"):
        raise SdctrError(f"{wanted!r} is not PORT[/tcp|udp]", hint="example: sdctr port web 80/tcp")
    found = [f"{p.host_ip or '0.0.0.0'}:{p.host_port}" for p in ordered
             if p.container_port == int(number) and p.proto == proto]
    if not found:
        raise SdctrError(f"no public port '{int(number)}/{proto}' published for {name}", status=1)
    return found


def cmd_port(args: argparse.Namespace) -> int:
    spec = find(paths_of(args), args.container)
    for line in port_lines(spec.ports, args.container, args.port):
        print(line)
    return 0


# --- network ls, network inspect: the networks there are (bridge, host, none) --------------------

BUILTIN = (("bridge", "bridge"), ("host", "host"), ("none", "null"))  # name, Docker's driver name


def network_id(name: str) -> str:
    """A stable id per network (Docker's are random; scripts only compare them)."""
    import hashlib

    return hashlib.sha256(f"sdctr network {name}".encode()).hexdigest()


def network_doc(args: argparse.Namespace, name: str) -> dict[str, object]:
    """`docker network inspect`'s document for one network."""
    driver = dict(BUILTIN).get(name)
    if driver is None:
        raise SdctrError(f"no such network: {name}", hint="the networks are: bridge, host, none", status=1)
    doc: dict[str, object] = {"Name": name, "Id": network_id(name), "Scope": "local", "Driver": driver,
                              "EnableIPv6": False, "IPAM": {"Driver": "default", "Config": []},
                              "Internal": False, "Containers": {}, "Options": {}}
    if name != "bridge":
        return doc
    from sdctr.net import ipam
    from sdctr.net.network import default_network
    from sdctr.net.setup import mac_address
    from sdctr.state import all_specs

    paths = paths_of(args)
    net = default_network()
    names = {s.id: s.name for s in all_specs(paths)}
    doc["IPAM"] = {"Driver": "default", "Config": [{"Subnet": net.subnet.text, "Gateway": net.gateway_text}]}
    doc["Containers"] = {cid: {"Name": names.get(cid, ""), "MacAddress": mac_address(ipam.parse_ip(a)),
                               "IPv4Address": f"{a}/{net.subnet.prefix}", "IPv6Address": ""}
                         for cid, a in sorted(ipam.read(net.leases_path(paths)).items())}
    doc["Options"] = {"com.docker.network.bridge.name": net.bridge}
    return doc


def cmd_network_ls(args: argparse.Namespace) -> int:
    if args.quiet:
        for name, _ in BUILTIN:
            print(network_id(name)[:12])
        return 0
    from sdctr.cli.output import table

    table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
          [[network_id(name)[:12], name, driver, "local"] for name, driver in BUILTIN])
    return 0


def cmd_network_inspect(args: argparse.Namespace) -> int:
    from sdctr.cli.output import print_docs

    print_docs([network_doc(args, name) for name in args.networks], args.format)
    return 0
