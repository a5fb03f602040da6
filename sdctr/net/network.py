"""The default network, `bridge`: its settings (from /etc/sdctr/sdctr.yaml's `network:` section),
its bridge, and the check that its subnet overlaps no route the host already has."""

from __future__ import annotations

import json
import os

from sdctr.log import SdctrError
from sdctr.net import ipam
from sdctr.net.nft import NetRules
from sdctr.record import Record

TYPE_CHECKING = False  # typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path
    from typing import Any

    from sdctr.config import Config
    from sdctr.paths import Paths

DEFAULT_NAME = "bridge"
DEFAULT_BRIDGE = "sdctr0"
DEFAULT_SUBNET = "10.89.0.0/16"


class Network(Record):
    name: str
    bridge: str
    subnet: ipam.Subnet
    gateway: int

    @property
    def gateway_text(self) -> str:
        return ipam.format_ip(self.gateway)

    @property
    def rules(self) -> NetRules:
        return NetRules(self.name, self.bridge, self.subnet.text)

    def leases_path(self, paths: Paths) -> Path:
        return paths.root / "networks" / self.name


def default_network(config: Config | None = None) -> Network:
    """The `bridge` network as the configuration sets it (the configuration has checked it)."""
    if config is None:
        from sdctr import config as config_module

        config = config_module.load()
    from sdctr.config import config_path

    settings = config.network
    try:
        subnet = ipam.Subnet.parse(settings.subnet)
        gateway = ipam.parse_ip(settings.gateway) if settings.gateway else subnet.first_host
    except ValueError as e:
        raise SdctrError(f"{config_path()}: network: {e}", hint="example: subnet: 10.89.0.0/16") from None
    if gateway not in subnet or gateway in (subnet.network, subnet.broadcast):
        raise SdctrError(f"{config_path()}: network.gateway {settings.gateway} is not a host address "
                         f"of {subnet.text}")
    return Network(DEFAULT_NAME, settings.bridge, subnet, gateway)


def overlapping_route(subnet: ipam.Subnet, routes: Iterable[dict[str, Any]], bridge: str) -> str | None:
    """The first route (as `ip -j route` lists them) whose destination overlaps `subnet`, other
    than the default route and our own bridge's; its text, for the error."""
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("", "default") or route.get("dev") == bridge:
            continue
        address, _, prefix = dst.partition("/")
        try:
            other = ipam.Subnet(ipam.parse_ip(address), int(prefix or 32))
        except ValueError:
            continue
        other = ipam.Subnet(other.network & other.mask, other.prefix)
        if subnet.overlaps(other):
            return f"{dst} dev {route.get('dev', '?')}"
    return None


def bridge_exists(net: Network) -> bool:
    return os.path.exists(f"/sys/class/net/{net.bridge}")


def check_bridge(net: Network) -> None:
    """Before the bridge is made (`run`, then the hook): its subnet is free, its name is not a
    foreign interface's."""
    from sdctr.external import run

    if bridge_exists(net):
        if not os.path.exists(f"/sys/class/net/{net.bridge}/bridge"):
            raise SdctrError(f"interface {net.bridge} exists and is not a bridge",
                             hint="set network.bridge in /etc/sdctr/sdctr.yaml to another name")
        return
    routes = json.loads(run(["ip", "-j", "-4", "route", "show"]).stdout or "[]")
    clash = overlapping_route(net.subnet, routes, net.bridge)
    if clash:
        raise SdctrError(f"network {net.name}'s subnet {net.subnet.text} overlaps the host's route "
                         f"{clash}", hint="set network.subnet in /etc/sdctr/sdctr.yaml to a free range")


def ensure_bridge(net: Network) -> bool:
    """The bridge with the gateway address, up, forwarding and route_localnet on; the caller
    holds the network's lock. True if it was made now."""
    from sdctr.external import run

    check_bridge(net)
    if bridge_exists(net):
        return False
    batch = (f"link add {net.bridge} type bridge\n"
             f"addr add {net.gateway_text}/{net.subnet.prefix} dev {net.bridge}\n"
             f"link set {net.bridge} up\n")
    run(["ip", "-batch", "-"], input=batch)
    # forwarding as Docker sets it (the whole host: forwarding is decided per incoming
    # interface, and published ports come in through any); route_localnet lets 127.0.0.1 be
    # DNATed out through the bridge
    for name, value in (("net/ipv4/ip_forward", "1"), (f"net/ipv4/conf/{net.bridge}/route_localnet", "1")):
        with open(f"/proc/sys/{name}", "w") as f:
            f.write(value)
    return True
