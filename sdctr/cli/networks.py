"""Verbs about containers' networks: `port` (a container's published ports, as `docker port`
prints them)."""

from __future__ import annotations

import argparse
import contextlib

from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.state import find

TYPE_CHECKING = False  # typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Iterator

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


# --- network create, ls, inspect, rm -------------------------------------------------------------

BUILTIN = (("bridge", "bridge"), ("host", "host"), ("none", "null"))  # name, Docker's driver name


def network_id(paths: Paths, name: str) -> str:
    """A user network's id (random, as Docker's); the built-in ones' are stable hashes."""
    from sdctr.net.network import network_id_of

    found = network_id_of(paths, name)
    if found:
        return found
    import hashlib

    return hashlib.sha256(f"sdctr network {name}".encode()).hexdigest()


def network_rows(paths: Paths) -> list[tuple[str, str]]:
    from sdctr.net.network import user_networks

    return [*BUILTIN, *((n.name, "bridge") for n in user_networks(paths))]


def network_doc(args: argparse.Namespace, name: str) -> dict[str, object]:
    """`docker network inspect`'s document for one network."""
    from sdctr.net.network import network_named

    paths = paths_of(args)
    driver = dict(network_rows(paths)).get(name)
    if driver is None:
        raise SdctrError(f"no such network: {name}", hint="`sdctr network ls` lists them", status=1)
    doc: dict[str, object] = {"Name": name, "Id": network_id(paths, name), "Scope": "local", "Driver": driver,
                              "EnableIPv6": False, "IPAM": {"Driver": "default", "Config": []},
                              "Internal": False, "Containers": {}, "Options": {}}
    if driver != "bridge":
        return doc
    from sdctr.net import ipam
    from sdctr.net.setup import mac_address
    from sdctr.state import all_specs

    net = network_named(paths, name)
    specs = {s.id: s for s in all_specs(paths)}
    names = {cid: s.name for cid, s in specs.items()}
    macs = {cid: s.mac_address for cid, s in specs.items() if s.mac_address}  # --mac-address's
    doc["IPAM"] = {"Driver": "default", "Config": [{"Subnet": net.subnet.text, "Gateway": net.gateway_text}]}
    if net.subnet6:
        doc["EnableIPv6"] = True
        doc["IPAM"]["Config"].append({"Subnet": net.subnet6.text, "Gateway": net.gateway6_text})  # type: ignore[index]
    doc["Containers"] = {cid: {"Name": names.get(cid, ""),
                               "MacAddress": macs.get(cid) or mac_address(ipam.parse_ip(a)),
                               "IPv4Address": f"{a}/{net.subnet.prefix}",
                               "IPv6Address": f"{net.address6(ipam.parse_ip(a))}/{net.subnet6.prefix}"
                               if net.subnet6 else ""}
                         for cid, a in sorted(ipam.read(net.leases_path(paths)).items())}
    doc["Options"] = {"com.docker.network.bridge.name": net.bridge}
    return doc


def cmd_network_ls(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    rows = network_rows(paths)
    if args.quiet:
        for name, _ in rows:
            print(network_id(paths, name)[:12])
        return 0
    docs = [{"ID": network_id(paths, name)[:12], "Name": name, "Driver": driver, "Scope": "local"}
            for name, driver in rows]
    if args.format and args.format != "table":
        from sdctr.cli.template import render_all

        for line in render_all(args.format, docs, {"ID": "NETWORK ID"}):
            print(line)
        return 0
    from sdctr.cli.output import table

    table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"], [list(d.values()) for d in docs])
    return 0


def cmd_network_inspect(args: argparse.Namespace) -> int:
    from sdctr.cli.output import print_docs

    print_docs([network_doc(args, name) for name in args.networks], args.format)
    return 0


@contextlib.contextmanager
def networks_locked(paths: Paths) -> Iterator[None]:
    import fcntl

    from sdctr.net.network import netconf_dir

    netconf_dir(paths).mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(netconf_dir(paths) / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def cmd_network_create(args: argparse.Namespace) -> int:
    """A user network: a bridge of its own (made when its first container starts), a subnet from
    the pool 10.90-127.0.0/16 or --subnet, the gateway its first address or --gateway."""
    import json

    from sdctr.external import run
    from sdctr.net.network import create_network, network_id_of
    from sdctr.options import NAME_RE

    if not NAME_RE.fullmatch(args.name):
        raise SdctrError(f"network name {args.name!r} is not [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    paths = paths_of(args)
    subnet, subnet6 = split_subnets(args.subnet, args.ipv6)
    if subnet6:
        from sdctr.net.setup import IPTABLES, firewall

        if firewall() == IPTABLES:  # the iptables back end has no ip6tables side (yet)
            raise SdctrError("IPv6 networks need nftables: this host's rules are in iptables",
                             hint="install nftables, or set network.firewall: nftables in sdctr.yaml")
    routes = json.loads(run(["ip", "-j", "-4", "route", "show"]).stdout or "[]")
    routes6 = json.loads(run(["ip", "-j", "-6", "route", "show"]).stdout or "[]") if subnet6 else []
    with networks_locked(paths):
        create_network(paths, args.name, subnet, args.gateway, routes, subnet6=subnet6, host_routes6=routes6)
    print(network_id_of(paths, args.name))
    return 0


def split_subnets(given: list[str], ipv6: bool) -> tuple[str | None, str | None]:
    """--subnet's, at most one IPv4 and (with --ipv6) one IPv6 subnet, told apart by a colon."""
    v4 = [s for s in given if ":" not in s]
    v6 = [s for s in given if ":" in s]
    if len(v4) > 1 or len(v6) > 1:
        raise SdctrError(f"--subnet {' '.join(given)}: one IPv4 and one IPv6 subnet at most")
    if v6 and not ipv6:
        raise SdctrError(f"--subnet {v6[0]} is IPv6: add --ipv6", hint=f"--ipv6 --subnet {v6[0]}")
    if ipv6 and not v6:
        raise SdctrError("--ipv6 needs an IPv6 --subnet", hint="example: --ipv6 --subnet fd00:90::/64")
    return (v4[0] if v4 else None), (v6[0] if v6 else None)


def cmd_network_rm(args: argparse.Namespace) -> int:
    """Refused while a container (running or not) is on it, as Docker refuses active endpoints."""
    from sdctr.net.setup import connected
    from sdctr.state import all_specs

    paths = paths_of(args)
    for name in args.networks:
        if name in dict(BUILTIN):
            raise SdctrError(f"{name} is a built-in network and cannot be removed", status=1)
        with networks_locked(paths):
            users = [s.name for s in all_specs(paths)
                     if s.network_name == name or name in connected(paths, s.id)]
            if users:
                raise SdctrError(f"network {name} is in use by container {', '.join(users)}",
                                 hint=f"remove it first: sdctr rm -f {users[0]}", status=1)
            remove_network(paths, name)
        print(name)
    return 0


def cmd_network_prune(args: argparse.Namespace) -> int:
    """`docker network prune [-f]`: every user network no container (running or not) is on."""
    from sdctr.cli.manage import _confirm
    from sdctr.net.network import user_networks
    from sdctr.net.setup import connected
    from sdctr.state import all_specs

    if not _confirm(["WARNING! This will remove all custom networks not used by at least one container."],
                    args.force):
        return 0
    paths = paths_of(args)
    removed = []
    with networks_locked(paths):
        used = {n for s in all_specs(paths) for n in (s.network_name, *connected(paths, s.id))}
        for net in user_networks(paths):
            if net.name not in used:
                remove_network(paths, net.name)
                removed.append(net.name)
    if removed:
        print("Deleted Networks:\n" + "".join(f"{name}\n" for name in removed), end="")
    return 0


def remove_network(paths: Paths, name: str) -> None:
    """A user network's bridge, leases, lock, definition and rules; the caller holds
    networks_locked and has seen that no container is on it."""
    import os
    import shutil

    from sdctr.net import dnsserver
    from sdctr.net.network import netconf_dir, network_named, untrust_bridge, user_networks
    from sdctr.net.setup import apply_rules, dns_server, remove_veth, rules_present

    net = network_named(paths, name)
    if dns_server(net):  # its DNS server goes before its address does
        dnsserver.stop(paths, net.bridge)
    if os.path.exists(f"/sys/class/net/{net.bridge}"):
        untrust_bridge(net)  # out of firewalld's trusted zone, where it runs
        remove_veth(net.bridge)  # (ip link del, as for a veth)
    shutil.rmtree(net.leases_path(paths), ignore_errors=True)
    lock = net.leases_path(paths).with_name(f"{name}.lock")
    for leftover in (lock, netconf_dir(paths) / f"{name}.json"):
        leftover.unlink(missing_ok=True)
    if rules_present():  # the isolation and masquerade rules without it
        apply_rules(paths, "", "", ())
    if net.subnet6 and not any(n.subnet6 for n in user_networks(paths)):  # the last IPv6 network
        from sdctr.external import run
        from sdctr.net import nft

        run(["nft", "-f", "-"], input=nft.delete_table6_text())


def cmd_network_connect(args: argparse.Namespace) -> int:
    """`docker network connect NETWORK CONTAINER`, on a running container: eth1, ... until it stops."""
    from sdctr.net.setup import connect

    paths = paths_of(args)
    with networks_locked(paths):
        connect(paths, find(paths, args.container), args.network)
    return 0


def cmd_network_disconnect(args: argparse.Namespace) -> int:
    from sdctr.net.setup import disconnect

    paths = paths_of(args)
    with networks_locked(paths):
        disconnect(paths, find(paths, args.container), args.network)
    return 0
