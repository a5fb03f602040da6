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
