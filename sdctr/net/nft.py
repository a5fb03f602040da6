"""NAT and published ports as nftables text, in ONE table, `ip sdctr` (RHEL 8/9's firewall back
end): pure functions from what is wanted to what `nft -f -` reads, and from `nft -j` listings to
what is there. Applying them is sdctr.net.setup's.

The table's chains hold static rules only; every container's published port is an element of a
map, commented with the container's id, so cleanup and `sdctr system gc` find it by the comment:

    map ports     (proto . port)            -> container address . port   any local address
    map ports_ip  (host address . proto . port) -> ...                    -p IP:PORT:PORT

Each set-up sends the whole table declaration and re-fills its chains in one transaction, so it
is idempotent (a second `systemctl restart` doubles nothing) and repairs a table someone flushed.
Adding an element whose key another container holds fails the transaction: that port is taken,
and nothing of the set-up is applied. (Docker and netavark DNAT the same way: `fib daddr type
local` for any local address in PREROUTING and OUTPUT, route_localnet plus a masquerade so that
127.0.0.1 reaches a container.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sdctr.record import Record
from sdctr.spec import Port

TYPE_CHECKING = False  # typing costs ~3 ms to import
if TYPE_CHECKING:
    from typing import Any

TABLE = "sdctr"
FAMILY = "ip"
FAMILY6 = "ip6"  # the IPv6 side, while a network has IPv6 (table6_text)


class NetRules(Record):
    """One network's static rules: masquerade for what leaves its subnet through another
    interface, and for what the host sends to it from 127.0.0.0/8 (a published port reached
    through 127.0.0.1, with route_localnet set on the bridge)."""

    name: str
    bridge: str
    subnet: str  # "10.89.0.0/16"
    subnet6: str = ""  # "fd00:90::/64", on a network made with --ipv6


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "").replace('"', "") + '"'


def table_text(networks: Sequence[NetRules]) -> str:
    """The table, its maps and chains declared ("add" semantics: existing ones stay), and the
    chains' rules replaced."""
    lines = [
        f"table {FAMILY} {TABLE} {{",
        "  map ports { type inet_proto . inet_service : ipv4_addr . inet_service; }",
        "  map ports_ip { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }",
        "  chain prerouting { type nat hook prerouting priority dstnat; policy accept; }",
        "  chain output { type nat hook output priority -100; policy accept; }",
        "  chain postrouting { type nat hook postrouting priority srcnat; policy accept; }",
        "  chain forward { type filter hook forward priority filter; policy accept; }",
        "}",
    ]
    for chain in ("prerouting", "output", "postrouting", "forward"):
        lines.append(f"flush chain {FAMILY} {TABLE} {chain}")
    for chain in ("prerouting", "output"):
        lines += [
            f"add rule {FAMILY} {TABLE} {chain} fib daddr type local "
            "dnat ip to meta l4proto . th dport map @ports",
            f"add rule {FAMILY} {TABLE} {chain} dnat ip to ip daddr . meta l4proto . th dport map @ports_ip",
        ]
    for net in networks:
        comment = _quote(f"network {net.name}")
        bridge = _quote(net.bridge)
        lines += [
            f"add rule {FAMILY} {TABLE} postrouting ip saddr {net.subnet} oifname != {bridge} "
            f"masquerade comment {comment}",
            f"add rule {FAMILY} {TABLE} postrouting ip saddr 127.0.0.0/8 oifname {bridge} "
            f"masquerade comment {comment}",
        ]
    # networks do not reach each other (Docker's DOCKER-ISOLATION chains)
    for net in networks:
        for other in networks:
            if other.bridge != net.bridge:
                lines.append(f"add rule {FAMILY} {TABLE} forward iifname {_quote(net.bridge)} oifname "
                             f"{_quote(other.bridge)} drop comment {_quote(f'network {net.name}')}")
    return "\n".join(lines) + "\n"


def table6_text(networks: Sequence[NetRules]) -> str:
    """The IPv6 side, table `ip6 sdctr`, while a network has IPv6: masquerade for what leaves an
    IPv6 subnet through another interface, and the networks kept apart as in the IPv4 table. No
    published ports (they are IPv4 DNAT). Nothing without an IPv6 network (the last one's `network
    rm` deletes the table: delete_table6_text), so a host without one sends what it sent before."""
    lines = [f"table {FAMILY6} {TABLE} {{",
             "  chain postrouting { type nat hook postrouting priority srcnat; policy accept; }",
             "  chain forward { type filter hook forward priority filter; policy accept; }",
             "}"]
    if not any(n.subnet6 for n in networks):
        return ""
    lines += [f"flush chain {FAMILY6} {TABLE} postrouting", f"flush chain {FAMILY6} {TABLE} forward"]
    for net in networks:
        if net.subnet6:
            lines.append(f"add rule {FAMILY6} {TABLE} postrouting ip6 saddr {net.subnet6} oifname != "
                         f"{_quote(net.bridge)} masquerade comment {_quote(f'network {net.name}')}")
    for net in networks:
        for other in networks:
            if other.bridge != net.bridge:
                lines.append(f"add rule {FAMILY6} {TABLE} forward iifname {_quote(net.bridge)} oifname "
                             f"{_quote(other.bridge)} drop comment {_quote(f'network {net.name}')}")
    return "\n".join(lines) + "\n"


def delete_table6_text() -> str:
    """The IPv6 table gone, whether or not it is there (declared first: no error)."""
    return f"table {FAMILY6} {TABLE} {{ }}\ndelete table {FAMILY6} {TABLE}\n"


def _key(port: Port) -> str:
    key = f"{port.proto} . {port.host_port}"
    return f"{port.host_ip} . {key}" if port.host_ip else key


def _map(port: Port) -> str:
    return "ports_ip" if port.host_ip else "ports"


def add_ports_text(cid: str, address: str, ports: Iterable[Port]) -> str:
    """The container's published ports as map elements commented with its id."""
    return "".join(
        f"add element {FAMILY} {TABLE} {_map(p)} {{ {_key(p)} comment {_quote(cid)} : "
        f"{address} . {p.container_port} }}\n" for p in ports)


class Element(Record):
    """A map element as a listing shows it: its map, its key as nft reads it back, its comment."""

    map: str
    key: str
    comment: str


def elements(listing: dict[str, Any]) -> list[Element]:
    """The elements of the table's maps in `nft -j list table ip sdctr`'s output."""
    found = []
    for item in listing.get("nftables", ()):
        m = item.get("map")
        if not m or m.get("table") != TABLE:
            continue
        for entry in m.get("elem", ()):
            key = entry[0] if isinstance(entry, list) else entry
            elem = key.get("elem", {}) if isinstance(key, dict) else {}
            val = elem.get("val", key)
            comment = elem.get("comment", "")
            parts = val.get("concat", [val]) if isinstance(val, dict) else [val]
            found.append(Element(m["name"], " . ".join(str(p) for p in parts), comment))
    return found


def delete_elements_text(doomed: Iterable[Element]) -> str:
    return "".join(f"delete element {FAMILY} {TABLE} {e.map} {{ {e.key} }}\n" for e in doomed)
