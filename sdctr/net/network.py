"""The default network, `bridge`: its settings (from /etc/sdctr/sdctr.yaml's `network:` section),
its bridge, and the check that its subnet overlaps no route the host already has."""

from __future__ import annotations

import json
import os
import sys

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
    subnet6: ipam.Subnet6 | None = None  # `network create --ipv6`'s (sdctr.net.ipam: the offsets are shared)

    @property
    def gateway_text(self) -> str:
        return ipam.format_ip(self.gateway)

    @property
    def gateway6_text(self) -> str:
        return self.address6(self.gateway)

    def address6(self, address: int) -> str:
        """The IPv6 address that goes with the IPv4 `address`; "" on a network without IPv6."""
        return ipam.format_ip6(self.subnet6.address(self.subnet, address)) if self.subnet6 else ""

    @property
    def rules(self) -> NetRules:
        return NetRules(self.name, self.bridge, self.subnet.text, self.subnet6.text if self.subnet6 else "")

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


# --- user networks: <root>/netconf/<name>.json, each its own bridge and subnet ------------------

POOL = [f"10.{b}.0.0/16" for b in range(90, 128)]  # after the default's 10.89.0.0/16
BRIDGE_PREFIX = "sdbr"  # + 11 hex digits of the network's id: IFNAMSIZ - 1


def netconf_dir(paths: Paths) -> Path:
    return paths.root / "netconf"


def network_named(paths: Paths, name: str) -> Network:
    """The default network for "bridge" (or ""), else the user network of that name."""
    if name in ("", DEFAULT_NAME):
        return default_network()
    try:
        doc = json.loads((netconf_dir(paths) / f"{name}.json").read_text())
    except FileNotFoundError:
        raise SdctrError(f"--network {name!r}: no such network",
                         hint="the networks are: bridge, host, none, and `sdctr network ls`'s") from None
    return Network(doc["name"], doc["bridge"], ipam.Subnet.parse(doc["subnet"]),
                   ipam.parse_ip(doc["gateway"]),
                   ipam.Subnet6.parse(doc["subnet6"]) if doc.get("subnet6") else None)


def user_networks(paths: Paths) -> list[Network]:
    d = netconf_dir(paths)
    names = sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []
    return [network_named(paths, n) for n in names]


def all_networks(paths: Paths) -> list[Network]:
    return [default_network(), *user_networks(paths)]


def create_network(paths: Paths, name: str, subnet: str | None, gateway: str | None,
                   host_routes: Iterable[dict[str, Any]], *, subnet6: str | None = None,
                   host_routes6: Iterable[dict[str, Any]] = ()) -> Network:
    """A user network's definition (its bridge is made by its first container's start): the
    subnet given, or the first /16 of the pool that overlaps no other network and no host route;
    with `subnet6` (--ipv6), that IPv6 subnet too, checked alike. The caller holds the state lock."""
    others = all_networks(paths)
    if any(n.name == name for n in others) or name in ("host", "none"):
        raise SdctrError(f"network {name} already exists")
    routes = list(host_routes)
    if subnet:
        try:
            chosen = ipam.Subnet.parse(subnet)
        except ValueError as e:
            raise SdctrError(f"--subnet: {e}", hint="example: --subnet 10.99.0.0/24") from None
        clash = next((n for n in others if n.subnet.overlaps(chosen)), None)
        if clash:
            raise SdctrError(f"--subnet {subnet} overlaps network {clash.name}'s {clash.subnet.text}")
        route = overlapping_route(chosen, routes, "")
        if route:
            raise SdctrError(f"--subnet {subnet} overlaps the host's route {route}")
    else:
        free = (ipam.Subnet.parse(t) for t in POOL)
        chosen = next((c for c in free if not any(n.subnet.overlaps(c) for n in others)
                       and not overlapping_route(c, routes, "")), None)  # type: ignore[assignment]
        if chosen is None:
            raise SdctrError("no free subnet left in the pool (10.90.0.0/16 to 10.127.0.0/16)",
                             hint="give one: --subnet 10.200.0.0/24")
    try:
        address = ipam.parse_ip(gateway) if gateway else chosen.first_host
    except ValueError as e:
        raise SdctrError(f"--gateway: {e}") from None
    if address not in chosen or address in (chosen.network, chosen.broadcast):
        raise SdctrError(f"--gateway {gateway} is not a host address of {chosen.text}")
    chosen6 = check_subnet6(subnet6, chosen, others, host_routes6) if subnet6 else None
    network_id = os.urandom(32).hex()
    net = Network(name, BRIDGE_PREFIX + network_id[:11], chosen, address, chosen6)
    d = netconf_dir(paths)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = d / f".{name}.tmp{os.getpid()}"
    tmp.write_text(json.dumps({"name": name, "id": network_id, "bridge": net.bridge,
                               "subnet": chosen.text, "gateway": net.gateway_text,
                               **({"subnet6": chosen6.text} if chosen6 else {})}, indent=1))
    os.rename(tmp, d / f"{name}.json")
    return net


def check_subnet6(text: str, subnet: ipam.Subnet, others: Iterable[Network],
                  routes: Iterable[dict[str, Any]]) -> ipam.Subnet6:
    """--ipv6 --subnet's: an IPv6 subnet with room for the IPv4 subnet's offsets, overlapping no
    other network's and no host route (the default route and link-local ones aside)."""
    try:
        chosen = ipam.Subnet6.parse(text)
    except ValueError as e:
        raise SdctrError(f"--subnet: {e}", hint="example: --ipv6 --subnet fd00:90::/64") from None
    if not chosen.fits(subnet):
        raise SdctrError(f"--subnet {text} is too small for the IPv4 subnet {subnet.text}: its prefix "
                         f"must be /{128 - (32 - subnet.prefix)} or shorter",
                         hint="example: --ipv6 --subnet fd00:90::/64")
    clash = next((n for n in others if n.subnet6 and n.subnet6.overlaps(chosen)), None)
    if clash:
        raise SdctrError(f"--subnet {text} overlaps network {clash.name}'s {clash.subnet6.text}")  # type: ignore[union-attr]
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("", "default") or dst.startswith("fe80:") or dst.startswith("ff00:"):
            continue
        try:
            other = ipam.Subnet6.parse(dst if "/" in dst else f"{dst}/128")
        except ValueError:
            continue
        if chosen.overlaps(other):
            raise SdctrError(f"--subnet {text} overlaps the host's route {dst} dev {route.get('dev', '?')}")
    return chosen


def network_id_of(paths: Paths, name: str) -> str | None:
    try:
        return str(json.loads((netconf_dir(paths) / f"{name}.json").read_text())["id"])
    except (FileNotFoundError, KeyError, ValueError):
        return None


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
    # an address of its own (Docker's scheme, from the gateway's), set: a bridge left to pick one
    # takes its ports' lowest, which changes as members come and go, and the members' ARP caches
    # keep the old one for the gateway for seconds: DNS and all traffic out stopped meanwhile
    mac = "02:42:" + ":".join(f"{net.gateway >> s & 255:02x}" for s in (24, 16, 8, 0))
    batch = (f"link add {net.bridge} type bridge\n"
             f"link set {net.bridge} address {mac}\n"
             f"addr add {net.gateway_text}/{net.subnet.prefix} dev {net.bridge}\n"
             f"link set {net.bridge} up\n")
    if net.subnet6:  # (nodad: the address is ours alone, and usable at once)
        batch += f"addr add {net.gateway6_text}/{net.subnet6.prefix} dev {net.bridge} nodad\n"
    run(["ip", "-batch", "-"], input=batch)
    # forwarding as Docker sets it (the whole host: forwarding is decided per incoming
    # interface, and published ports come in through any); route_localnet lets 127.0.0.1 be
    # DNATed out through the bridge
    sysctls = [("net/ipv4/ip_forward", "1"), (f"net/ipv4/conf/{net.bridge}/route_localnet", "1")]
    if net.subnet6:
        # as Docker with --ipv6: the host forwards IPv6 (an interface that takes its address
        # from router advertisements then needs accept_ra=2, as under Docker)
        sysctls.append(("net/ipv6/conf/all/forwarding", "1"))
    for name, value in sysctls:
        with open(f"/proc/sys/{name}", "w") as f:
            f.write(value)
    trust_bridge(net)
    return True


def trust_bridge(net: Network) -> None:
    """Where firewalld runs, the bridge in its trusted zone (sdctr.net.firewalld). A refusal is
    a warning: the containers run, but firewalld may drop their traffic."""
    from sdctr.net import firewalld
    from sdctr.systemd.bus import BusError

    try:
        firewalld.trust(net.bridge)
    except BusError as e:
        print(f"sdctr: warning: firewalld did not put {net.bridge} into its trusted zone: {e}; "
              "it may drop the containers' traffic", file=sys.stderr, flush=True)


def untrust_bridge(net: Network) -> None:
    """Out of firewalld's zone, before the bridge goes; a refusal is a warning."""
    from sdctr.net import firewalld
    from sdctr.systemd.bus import BusError

    try:
        firewalld.untrust(net.bridge)
    except BusError as e:
        print(f"sdctr: warning: firewalld did not take {net.bridge} out of its zone: {e}",
              file=sys.stderr, flush=True)
