"""NAT and published ports as iptables rules, where nft is absent (RHEL7) or the configuration asks
for them (`network.firewall: iptables`): pure functions from what is wanted to what
`iptables-restore --noflush` reads, and from `iptables-save`'s output to what is there. Applying
them is sdctr.net.setup's. The same rules as sdctr.net.nft's table, in chains of sdctr's own,
as Docker lays its DOCKER chains out:

    nat     PREROUTING, OUTPUT  -m addrtype --dst-type LOCAL -j SDCTR-DNAT   (any local address,
                                127.0.0.1 included: route_localnet is set on the bridge)
            SDCTR-DNAT          one DNAT rule per published port, commented with the container's id
            POSTROUTING         -j SDCTR-POSTROUTING: masquerade for what leaves a network's subnet
                                through another interface, and for 127.0.0.0/8 sent to a bridge
    filter  FORWARD             -j SDCTR-FORWARD (first): networks do not reach each other; what a
                                bridge sends, and what comes back or is DNATed to it, is accepted
                                (RHEL7's iptables-services ends FORWARD with a REJECT)

Static rules carry the comment "network NAME", the jumps "sdctr"; only the port rules carry a
container id, so cleanup and `sdctr system gc` find them by it. The static chains are declared
(and so flushed, by iptables-restore) and re-filled at every set-up, so a second start doubles
nothing and repairs a flushed chain; SDCTR-DNAT is declared only where it is missing.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

from sdctr.net.nft import NetRules
from sdctr.record import Record
from sdctr.spec import Port

DNAT = "SDCTR-DNAT"
POSTROUTING = "SDCTR-POSTROUTING"
FORWARD = "SDCTR-FORWARD"
JUMP_COMMENT = "sdctr"
# (table, built-in chain, match before the jump, our chain)
JUMPS = (
    ("nat", "PREROUTING", "-m addrtype --dst-type LOCAL", DNAT),
    ("nat", "OUTPUT", "-m addrtype --dst-type LOCAL", DNAT),
    ("nat", "POSTROUTING", "", POSTROUTING),
    ("filter", "FORWARD", "", FORWARD),
)


class PortRule(Record):
    """One rule of SDCTR-DNAT as iptables-save lists it."""

    line: str  # "-A SDCTR-DNAT ...", as listed: "-D" + line[2:] deletes it
    comment: str  # the container's id
    proto: str
    host_port: int
    host_ip: str  # "": any local address

    def clashes(self, port: Port) -> bool:
        """Both would take the same connections: the first rule would win without a word."""
        return (self.proto == port.proto and self.host_port == port.host_port
                and (not self.host_ip or not port.host_ip or self.host_ip == port.host_ip))


class Saved(Record):
    """What `iptables-save` shows of ours."""

    chains: frozenset[tuple[str, str]]  # (table, chain) of every chain
    jumps: frozenset[tuple[str, str]]  # (table, built-in chain) holding our jump
    ports: tuple[PortRule, ...]


def _comment(text: str) -> str:
    """Quoted as iptables-restore reads it (double quotes only, no escapes)."""
    return '"' + text.replace('"', "").replace("\\", "") + '"'


def parse_save(text: str) -> Saved:
    """The chains, our jumps and our port rules in `iptables-save`'s output (every table)."""
    table = ""
    chains: set[tuple[str, str]] = set()
    jumps: set[tuple[str, str]] = set()
    ports: list[PortRule] = []
    ours = {chain for _, _, _, chain in JUMPS}
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":"):
            chains.add((table, line[1:].split()[0]))
        elif line.startswith("-A "):
            try:
                words = shlex.split(line)
            except ValueError:
                continue
            chain = words[1]
            target = _after(words, "-j")
            if chain not in ours and target in ours:
                jumps.add((table, chain))
            elif chain == DNAT and table == "nat":
                dport = _after(words, "--dport")
                ports.append(PortRule(line, _after(words, "--comment"), _after(words, "-p"),
                                      int(dport) if dport.isdigit() else 0,
                                      _after(words, "-d").split("/")[0]))
    return Saved(frozenset(chains), frozenset(jumps), tuple(ports))


def _after(words: Sequence[str], flag: str) -> str:
    try:
        return words[words.index(flag) + 1]
    except (ValueError, IndexError):
        return ""


def restore_text(networks: Sequence[NetRules], saved: Saved, cid: str = "", address: str = "",
                 ports: Iterable[Port] = ()) -> str:
    """For `iptables-restore --noflush`: our chains (the static ones flushed and re-filled), the
    jumps to them where missing, and the container's published ports (in place of any it had)."""
    nat = ["*nat", f":{POSTROUTING} - [0:0]"]
    if ("nat", DNAT) not in saved.chains:
        nat.append(f":{DNAT} - [0:0]")
    filt = ["*filter", f":{FORWARD} - [0:0]"]
    for net in networks:
        comment = f"-m comment --comment {_comment(f'network {net.name}')}"
        nat += [f"-A {POSTROUTING} -s {net.subnet} ! -o {net.bridge} {comment} -j MASQUERADE",
                f"-A {POSTROUTING} -s 127.0.0.0/8 -o {net.bridge} {comment} -j MASQUERADE"]
    for net in networks:  # networks do not reach each other (Docker's DOCKER-ISOLATION chains)
        comment = _comment(f"network {net.name}")
        filt += [f"-A {FORWARD} -i {net.bridge} -o {other.bridge} -m comment --comment {comment} -j DROP"
                 for other in networks if other.bridge != net.bridge]
    for net in networks:
        comment = _comment(f"network {net.name}")
        filt += [f"-A {FORWARD} -i {net.bridge} -m comment --comment {comment} -j ACCEPT",
                 f"-A {FORWARD} -o {net.bridge} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT "
                 f"-m comment --comment {comment} -j ACCEPT"]
    for table, builtin, match, chain in JUMPS:
        if (table, builtin) not in saved.jumps:
            rule = f"-I {builtin} 1 {match} -m comment --comment {JUMP_COMMENT} -j {chain}"
            (nat if table == "nat" else filt).append(" ".join(rule.split()))
    nat += ["-D" + rule.line[2:] for rule in saved.ports if cid and rule.comment == cid]  # a restart's
    for p in ports:
        where = f"-d {p.host_ip}/32 " if p.host_ip else ""
        nat.append(f"-A {DNAT} {where}-p {p.proto} -m {p.proto} --dport {p.host_port} -m comment "
                   f"--comment {_comment(cid)} -j DNAT --to-destination {address}:{p.container_port}")
    return "\n".join([*nat, "COMMIT", *filt, "COMMIT"]) + "\n"


def delete_text(doomed: Iterable[PortRule]) -> str:
    """For `iptables-restore --noflush`: the rules deleted, as listed."""
    lines = ["-D" + rule.line[2:] for rule in doomed]
    return "\n".join(["*nat", *lines, "COMMIT"]) + "\n" if lines else ""
