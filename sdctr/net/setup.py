"""A container's place on a bridge network, made by the unit's ExecStartPre (`sdctr hook netup`)
and taken down by its ExecStopPost (`sdctr hook netdown`), and what a crash left, collected by
`sdctr system gc`.

    up:   address leased (under the network's lock, which also guards making the bridge);
          network namespace unshared and pinned at <run>/netns/<id> (a bind mount of the
          namespace file, as `ip netns add` makes); veth pair, host end sdv<id12> on the
          bridge, the other end eth0 in the namespace, address and default route;
          published ports as elements of the `sdctr` nftables table (or, where nft is absent,
          rules in iptables chains: sdctr.net.iptables); hosts and resolv.conf
    down: the table's elements (or rules) commented with the id, the veth, the lease, the pin

Both are idempotent: up first takes down what an earlier start left, and down ignores what is
not there, so `systemctl restart` and a hook killed halfway double nothing. External commands:
two `ip -batch -` (one in the host's namespace, one in the container's, entered with setns) and
one `nft -f -` per start; down lists the table once (`nft -j`) to find the id's elements.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import socket

from sdctr import linux
from sdctr.external import run
from sdctr.log import SdctrError
from sdctr.net import dns, dnsserver, ipam, iptables, joined, nft
from sdctr.net.network import (
    DEFAULT_NAME,
    Network,
    all_networks,
    bridge_exists,
    check_bridge,
    ensure_bridge,
    network_named,
    user_networks,
)

TYPE_CHECKING = False  # typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator
    from pathlib import Path
    from typing import Any

    from sdctr.paths import Paths
    from sdctr.spec import ContainerSpec, Port

VETH_PREFIX = "sdv"  # + the short id: 15 characters, the kernel's limit (IFNAMSIZ - 1)


def veth_name(cid: str) -> str:
    return VETH_PREFIX + cid[:12]


def mac_address(address: int) -> str:
    """Docker's: 02:42 and the four bytes of the IPv4 address (unique where the address is)."""
    return "02:42:" + ":".join(f"{address >> s & 255:02x}" for s in (24, 16, 8, 0))


# --- before anything is made (`run`, `create`): one clear line and status 125 ----------------

def preflight(paths: Paths, spec: ContainerSpec, others: Iterable[ContainerSpec], *,
              starting: bool = True) -> None:
    """What the hook would refuse, refused before a record exists: an address outside the
    subnet or held; a host port that a process or another running container has; a subnet that
    overlaps a host route; a bridge name a foreign interface has. `others`: every other record."""
    require_tools()
    net = network_named(paths, spec.network_name)
    held = ipam.read(net.leases_path(paths))
    if spec.ip:
        ipam.pick(net.subnet, net.gateway, {ipam.parse_ip(a) for a in held.values()},
                  requested=ipam.parse_ip(spec.ip))
    check_bridge(net)
    if not starting:
        return
    check_ports_free(spec.ports)
    for other in others:
        if other.id in held:
            for port in other.ports:
                if any(p.host_port == port.host_port and p.proto == port.proto and
                       (not p.host_ip or not port.host_ip or p.host_ip == port.host_ip) for p in spec.ports):
                    raise SdctrError(f"host port {port.host_port}/{port.proto} is already published by "
                                     f"container {other.name}", hint="publish another port")


# --- the shell fast path (sdctr/netup.sh, sdctr/netdown.sh) ---------------------------------------

def script_commands(paths: Paths, spec: ContainerSpec) -> tuple[list[str], list[str]] | None:
    """The unit's netup and netdown as the shell scripts that do up() and down() without Python
    in the common case, each to be followed by its hook's argv; None where they cannot
    (published ports: the free-port check and the nftables elements are the hook's; a user
    network: its containers' hosts files are refreshed by the hook). Writes the
    container's resolv.conf now, from the host's at this start: the script writes only hosts."""
    if spec.ports or spec.network_name or spec.add_hosts or spec.mac_address:
        return None  # (a user network's hosts files are refreshed by the hook; the rest is rare)
    from sdctr.paths import NETDOWN_SCRIPT, NETUP_SCRIPT

    net = network_named(paths, "")
    leases, pin = net.leases_path(paths), paths.netns(spec.id)
    directory = paths.container_dir(spec.id)
    write_file(directory, "resolv.conf", resolv_conf(spec))
    up = ["/bin/sh", NETUP_SCRIPT, spec.id, str(leases), net.bridge, str(net.subnet.prefix),
          str(net.gateway), str(net.subnet.network + 1), str(net.subnet.broadcast - 1),
          str(ipam.parse_ip(spec.ip)) if spec.ip else "", str(pin), str(directory / "hosts"),
          spec.hostname_or_id]
    down = ["/bin/sh", NETDOWN_SCRIPT, veth_name(spec.id), str(leases / spec.id), str(pin)]
    return up, down


# where systemd's units find commands (its default PATH): the hooks' commands, not the caller's
UNIT_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
PACKAGES = {"ip": "iproute2", "nft": "nftables", "iptables": "iptables"}
NFTABLES, IPTABLES = "nftables", "iptables"


def installed(tool: str, where: Iterable[str] = UNIT_PATH) -> bool:
    return any(os.access(f"{d}/{tool}", os.X_OK) for d in where)


def firewall(where: Iterable[str] = UNIT_PATH) -> str:
    """The back end of the NAT and port rules: /etc/sdctr/sdctr.yaml's network.firewall, or for
    `auto` nftables where nft is installed, else iptables where it is (RHEL7), else nftables."""
    chosen = configured_firewall()
    if chosen != "auto":
        return chosen
    dirs = tuple(where)
    return IPTABLES if not installed("nft", dirs) and installed("iptables", dirs) else NFTABLES


def dns_server(net: Network, where: Iterable[str] = UNIT_PATH) -> str:
    """dnsmasq's path where the network gets a DNS server of its own (sdctr.net.dnsserver); ""
    on the default network (Docker's `bridge` has no names) and where dnsmasq is not installed
    (its members' /etc/hosts carry the names then)."""
    if net.name == DEFAULT_NAME:
        return ""
    return _dnsmasq(tuple(where))


@functools.cache  # once per hook: refresh_hosts asks for every member
def _dnsmasq(where: tuple[str, ...]) -> str:
    return next((f"{d}/{dnsserver.DNSMASQ}" for d in where if installed(dnsserver.DNSMASQ, (d,))), "")


def served(net: Network, dns_servers: Iterable[str]) -> bool:
    """A member's names come from the network's DNS server: there is one, and the member did not
    ask for servers of its own (--dns: its /etc/hosts carries the names, as without dnsmasq)."""
    return bool(dns_server(net)) and not tuple(dns_servers)


def configured_firewall() -> str:
    from sdctr import config

    return config.load().network.firewall


def require_tools(where: Iterable[str] = UNIT_PATH) -> None:
    """The bridge network's commands, there before anything is made: without them the unit's
    hook would fail at start with a message in the journal."""
    dirs = tuple(where)
    rules = {"nftables": ("nft",), "iptables": ("iptables",)}.get(configured_firewall(), ("nft", "iptables"))
    for tools in (("ip",), rules):
        if not any(installed(tool, dirs) for tool in tools):
            packages = " or ".join(PACKAGES[tool] for tool in tools)
            raise SdctrError(f"the bridge network needs {' or '.join(tools)}, which this host lacks "
                             f"(package {packages})", hint=f"install {packages.split()[0]}, or run the "
                             "container with --network none or --network host")


# --- up -----------------------------------------------------------------------------------------

def up(paths: Paths, spec: ContainerSpec) -> None:
    net = network_named(paths, spec.network_name)
    check_ports_free(spec.ports)
    down(paths, spec.id)  # what an earlier start left (a hook killed halfway, a lost ExecStopPost)
    try:
        with ipam.Leases.open(net.leases_path(paths)) as leases:
            if not bridge_exists(net):
                # the table first: sdctr/netup.sh takes a bridge as the sign that its rules are in
                check_bridge(net)
                apply_rules(paths, spec.id, "", ())
            made = ensure_bridge(net)
            address = leases.lease(spec.id, net.subnet, net.gateway,
                                   ipam.parse_ip(spec.ip) if spec.ip else None,
                                   preferred=previous_address(paths, spec.id))
        pin = pin_netns(paths, spec.id)
        add_veth(net, spec.id, pin, address, spec.mac_address)
        apply_rules(paths, spec.id, ipam.format_ip(address), spec.ports)
        write_etc_files(paths, spec, ipam.format_ip(address))
        write_file(paths.container_dir(spec.id), ADDRESS, ipam.format_ip(address) + "\n")
        if spec.network_name:
            refresh_hosts(paths, net, restart_dns=made)
        joined.start_followers(paths, spec)  # those in its namespace its last stop took down
        for name in connected(paths, spec.id):  # `network connect`'s, kept across restarts as Docker's
            try:
                connect(paths, spec, name)
            except SdctrError as e:  # the network was removed meanwhile: the container runs without it
                print(f"sdctr: warning: network {name}: {e}", flush=True)
    except BaseException:
        with contextlib.suppress(Exception):
            down(paths, spec.id)
        raise


def bring_up(paths: Paths) -> list[str]:
    """The default network as a boot's first container would find it made (sdctr-setup.service's
    `sdctr system setup`): the nft table (or iptables chains) with every network's rules, then
    the bridge sdctr0 (netup.sh takes a bridge as the sign that the rules are in), and the
    directories of the pins and leases, so that even the first container takes netup.sh's path
    without Python. Under the network's lock, as up() makes them; idempotent: where both are
    there, a stat and one listing of the rules. What it made, [] if nothing."""
    require_tools()
    net = network_named(paths, "")
    made: list[str] = []
    with ipam.Leases.open(net.leases_path(paths)):
        if not bridge_exists(net) or not rules_present():
            check_bridge(net)
            apply_rules(paths, "", "", ())
            made.append("nftables table ip sdctr" if firewall() != IPTABLES else "iptables chains SDCTR-*")
        if ensure_bridge(net):
            made.append(f"bridge {net.bridge} ({net.gateway_text}/{net.subnet.prefix})")
    paths.netns("x").parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return made


# the record's file of the address its container had at its last start (sdctr/netup.sh writes it too)
ADDRESS = "address"


def previous_address(paths: Paths, cid: str) -> int | None:
    """The container's address at its last start, preferred at this one (Docker keeps a
    container's address across restarts of its daemon; a reboot is ours)."""
    try:
        return ipam.parse_ip((paths.container_dir(cid) / ADDRESS).read_text().strip())
    except (OSError, ValueError, SdctrError):
        return None


def assign_host_ports(spec: ContainerSpec, others: Iterable[ContainerSpec]) -> ContainerSpec:
    """Host port 0 (-P, -p PORT) replaced by a free one: one the kernel hands out for a bind to
    port 0 (from net.ipv4.ip_local_port_range, as Docker's allocator picks), and that no other
    container publishes. Kept for the container's life, so `sdctr port` and restarts agree."""
    if all(p.host_port for p in spec.ports):
        return spec
    taken = {(p.proto, p.host_port) for other in others for p in other.ports}
    taken |= {(p.proto, p.host_port) for p in spec.ports}
    ports = []
    for given in spec.ports:
        port = given if given.host_port else given.replace(host_port=free_port(given, taken))
        taken.add((port.proto, port.host_port))
        ports.append(port)
    return spec.replace(ports=tuple(ports))


def free_port(port: Port, taken: Collection[tuple[str, int]]) -> int:
    kind = socket.SOCK_STREAM if port.proto == "tcp" else socket.SOCK_DGRAM
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((port.host_ip or "0.0.0.0", 0))
            number: int = s.getsockname()[1]
        if (port.proto, number) not in taken:
            return number
    raise SdctrError(f"no free host port found for {port.container_port}/{port.proto}",
                     hint="publish it on a port of your choice: -p HOSTPORT:PORT")


def check_ports_free(ports: Iterable[Port]) -> None:
    """A host port that a process of the host listens on would be shadowed by the DNAT rule
    without a word: refused, as Docker's proxy refuses it by failing to bind."""
    for port in ports:
        kind = socket.SOCK_STREAM if port.proto == "tcp" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((port.host_ip or "0.0.0.0", port.host_port))
            except OSError as e:
                why = "is already in use" if e.errno == errno.EADDRINUSE else f"cannot be bound: {e.strerror}"
                raise SdctrError(f"host port {port.host_ip + ':' if port.host_ip else ''}{port.host_port}/"
                                 f"{port.proto} {why}", hint="publish another port: -p OTHER:"
                                 f"{port.container_port}") from None


def pin_netns(paths: Paths, cid: str) -> str:
    """A new network namespace, pinned by a bind mount of its file: unshared by this process,
    which then returns to the host's."""
    pin = paths.netns(cid)
    pin.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pin.touch(mode=0o444)
    host = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.unshare(linux.CLONE_NEWNET)
        try:
            linux.mount("/proc/thread-self/ns/net", pin, None, linux.MS_BIND)
        finally:
            linux.setns(host, linux.CLONE_NEWNET)
    finally:
        os.close(host)
    return str(pin)


@contextlib.contextmanager
def entered(pin: str) -> Iterator[None]:
    """This process (and the commands it runs) in the pinned namespace, then back."""
    host = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(pin, os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(target, linux.CLONE_NEWNET)
        try:
            yield
        finally:
            linux.setns(host, linux.CLONE_NEWNET)
    finally:
        os.close(target)
        os.close(host)


def add_veth(net: Network, cid: str, pin: str, address: int, mac: str = "") -> None:
    veth = veth_name(cid)
    run(["ip", "-batch", "-"], input=(
        f"link add {veth} type veth peer name eth0 address {mac or mac_address(address)} netns {pin}\n"
        f"link set {veth} master {net.bridge} up\n"))
    with entered(pin):
        run(["ip", "-batch", "-"], input=(
            "link set lo up\n"
            f"addr add {ipam.format_ip(address)}/{net.subnet.prefix} dev eth0\n"
            "link set eth0 up\n"
            f"route add default via {net.gateway_text}\n" + ipv6_lines(net, address, "eth0", True)))


def ipv6_lines(net: Network, address: int, dev: str, default_route: bool) -> str:
    """`ip -batch` lines for the interface's IPv6 address (nodad: it is unique by construction,
    and usable at once) and the default route through the bridge's, on a network with IPv6."""
    if not net.subnet6:
        return ""
    text = f"addr add {net.address6(address)}/{net.subnet6.prefix} dev {dev} nodad\n"
    return text + (f"route add default via {net.gateway6_text} dev {dev}\n" if default_route else "")


def apply_rules(paths: Paths, cid: str, address: str, ports: Collection[Port]) -> None:
    """The table (or chains) with every network's rules, and the container's ports."""
    networks = [n.rules for n in all_networks(paths)]
    if firewall() == IPTABLES:  # (IPv6 networks are nftables only so far)
        apply_iptables(paths, networks, cid, address, ports)
        return
    text = nft.table_text(networks) + nft.table6_text(networks) + nft.add_ports_text(cid, address, ports)
    errors: list[str] = []
    for attempt in range(3):
        r = run(["nft", "-f", "-"], input=text, check=False)
        if r.returncode == 0:
            return
        # nft's "Error: ..." lines (its last line only points at the rule with carets)
        errors = [ln.strip() for ln in r.stderr.splitlines() if ln.startswith("Error:")] or \
            r.stderr.strip().splitlines()[-1:]
        if any("File exists" in e for e in errors) and ports:
            raise SdctrError(f"a port of {', '.join(p.text for p in ports)} is already published by "
                             "another container", hint="publish another host port")
        # once more for what a concurrent transaction may cause (1 start of 50 at once failed so,
        # its message lost to the carets); a lasting error fails the same way each time
        import time

        time.sleep(0.1 * (attempt + 1))
    raise SdctrError(f"nft -f - failed: {'; '.join(errors) or 'no message'}")


def apply_iptables(paths: Paths, networks: list[nft.NetRules], cid: str, address: str,
                   ports: Collection[Port]) -> None:
    """As apply_rules, in iptables chains: what is there read, a port another container holds
    refused (nft's map refuses a second element with the same key; iptables would take a second
    rule without a word), the rest in one iptables-restore. Under a lock of ours, so two starts
    do not both see a port free."""
    with rules_locked(paths):
        saved = iptables.parse_save(run(["iptables-save"]).stdout)
        for rule in saved.ports:
            held = next((p for p in ports if rule.comment != cid and rule.clashes(p)), None)
            if held:
                raise SdctrError(f"host port {held.host_port}/{held.proto} is already published by "
                                 f"container {rule.comment[:12]}", hint="publish another host port")
        iptables_restore(iptables.restore_text(networks, saved, cid, address, ports))


def iptables_restore(text: str) -> None:
    """`iptables-restore --noflush`, waiting for the xtables lock (-w) where it can: since 1.6.2
    it fails at once while another program holds the lock; before (RHEL7's 1.4.21 before 7.6) it
    takes no lock and knows no -w."""
    r = run(["iptables-restore", "-w", "--noflush"], input=text, check=False)
    if r.returncode != 0 and ("unrecognized option" in r.stderr or "invalid option" in r.stderr):
        r = run(["iptables-restore", "--noflush"], input=text, check=False)
    if r.returncode != 0:
        raise SdctrError(f"iptables-restore failed: {r.stderr.strip()}")


@contextlib.contextmanager
def rules_locked(paths: Paths) -> Iterator[None]:
    import fcntl

    paths.run.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(paths.run / "iptables.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def write_etc_files(paths: Paths, spec: ContainerSpec, address: str) -> None:
    """hosts and resolv.conf in the record directory, where the init bind-mounts them from."""
    directory = paths.container_dir(spec.id)
    net = network_named(paths, spec.network_name)
    server = spec.network_name and served(net, spec.dns)
    others = peers(paths, net, spec.id) if spec.network_name and not server else []
    extra = dns.extra_hosts(spec.add_hosts, net.gateway_text)
    if net.subnet6:  # its IPv6 address under its name too, as Docker writes it
        extra.append((net.address6(ipam.parse_ip(address)), spec.hostname_or_id))
    write_file(directory, "hosts", dns.hosts(spec.hostname_or_id, address, others, extra))
    write_file(directory, "resolv.conf", resolv_conf(spec, net if server else None))


def resolv_conf(spec: ContainerSpec, server: Network | None = None) -> str:
    """The host's servers (its stub's upstream ones), or the DNS server of network `server` (on its
    gateway), then --dns's, --dns-search's, --dns-option's."""
    text = dns.resolv_conf(*dns.read_host_files())
    if server:
        text = dns.via_server(text, server.gateway_text, dnsserver.unit_name(server.bridge))
    return spec.custom_resolv_conf(text)


def write_file(directory: Path, name: str, text: str) -> None:
    """`name` in the record directory, whole (a temp renamed over it), 0644 before it holds a
    byte. The directory is never created: a record `rm` removed meanwhile must not come back
    as a directory without a config."""
    tmp = directory / f".{name}.tmp{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except FileNotFoundError:
        raise SdctrError(f"the record of container {directory.name[:12]} was removed while it "
                         "started") from None
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, 0o644)  # whatever the umask
        f.write(text)
    os.rename(tmp, directory / name)


def peers(paths: Paths, net: Network, but: str = "") -> list[tuple[str, str]]:
    """(address, names) of the containers holding a lease on the network, but `but`: their
    name, short id and --network-alias's, as Docker's DNS answers for them on a user network."""
    found = []
    for cid, address in sorted(ipam.read(net.leases_path(paths)).items()):
        if cid == but:
            continue
        try:
            doc = json.loads((paths.container_dir(cid) / "config.json").read_text())
        except (OSError, ValueError):
            continue
        names = [str(doc.get("name", "")), cid[:12], *map(str, doc.get("network_aliases") or ())]
        found.append((address, " ".join(dict.fromkeys(names))))
        if net.subnet6:  # and its IPv6 address, as Docker's DNS answers AAAA
            found.append((net.address6(ipam.parse_ip(address)), " ".join(dict.fromkeys(names))))
    return found


def refresh_hosts(paths: Paths, net: Network, also: Iterable[str] = (), restart_dns: bool = False) -> None:
    """DNS by name on a user network after a member came or went: the network's DNS server told
    (started if it is not running while the bridge is there; `restart_dns`: the bridge was made
    anew), and the /etc/hosts of every member (and `also`'s) whose names do not all come from its
    DNS server rewritten with the others' addresses on each user network it is on (its own
    where it has no DNS server, and those `network connect` added). In place (not by rename):
    the container sees the file through a bind mount of its inode. A resolver that caches (none
    in busybox or glibc without nscd) sees it at its next lookup."""
    server = dns_server(net)
    if server and bridge_exists(net):
        with ipam.Leases.open(net.leases_path(paths)):  # one start of the unit, and the newest list last
            members = peers(paths, net)
            if members or dnsserver.running_pid(paths, net.bridge):
                dnsserver.ensure(paths, net, members, server, restart=restart_dns)
    for cid in [*ipam.read(net.leases_path(paths)), *also]:
        try:
            doc = json.loads((paths.container_dir(cid) / "config.json").read_text())
            own = network_named(paths, str(doc.get("network_name") or ""))
            address = ipam.lease_of(own.leases_path(paths), cid)
            if not address:
                continue
            named = [n for n in user_networks(paths) if ipam.lease_of(n.leases_path(paths), cid)
                     and not (n.name == own.name and served(own, doc.get("dns") or ()))]
            if not named and cid not in also:
                continue  # its names come from its network's DNS server: its file has none
            others = [p for n in named for p in peers(paths, n, cid)]
            with open(paths.container_dir(cid) / "hosts", "r+") as f:
                hostname = doc.get("hostname") or cid[:12]
                extra = dns.extra_hosts(doc.get("add_hosts") or (), own.gateway_text)
                if own.subnet6:
                    extra.append((own.address6(ipam.parse_ip(address)), hostname))
                f.write(dns.hosts(hostname, address, others, extra))
                f.truncate()
        except (OSError, ValueError, SdctrError):
            continue


# --- network connect, disconnect: eth1, ... on a running container ------------------------------

def extra_veth_name(cid: str, index: int) -> str:
    """The host end of the container's eth<index> (1-9): sd<index><id12>, 15 characters."""
    return f"sd{index}{cid[:12]}"


def extra_veths(cid: str) -> dict[int, str]:
    """index -> the host end, of the container's eth1... that exist now."""
    return {i: extra_veth_name(cid, i) for i in range(1, 10)
            if os.path.exists(f"/sys/class/net/{extra_veth_name(cid, i)}")}


def connect(paths: Paths, spec: ContainerSpec, name: str) -> str:
    """A veth pair from the network's bridge to the running container's next free ethN, an
    address leased on the network, and the members' hosts files refreshed. The interface name.
    A container that is not running has the network recorded, as Docker's: its next start
    connects it (up()); "" then."""
    net = network_named(paths, name)
    pin = str(paths.netns(spec.id))
    if spec.network.value != "bridge":
        raise SdctrError(f"container {spec.name} has --network {spec.network_mode}, not a bridge network",
                         status=1)
    if net.name == network_named(paths, spec.network_name).name or \
            ipam.lease_of(net.leases_path(paths), spec.id) or \
            (not os.path.exists(pin) and net.name in connected(paths, spec.id)):
        raise SdctrError(f"container {spec.name} is already connected to network {net.name}", status=1)
    if not os.path.exists(pin):  # not running
        set_connected(paths, spec.id, [*connected(paths, spec.id), net.name])
        return ""
    index = next((i for i in range(1, 10) if i not in extra_veths(spec.id)), None)
    if index is None:
        raise SdctrError(f"container {spec.name} has eth1 to eth9 already", status=1)
    veth, inside = extra_veth_name(spec.id, index), f"eth{index}"
    with ipam.Leases.open(net.leases_path(paths)) as leases:
        if not bridge_exists(net):
            check_bridge(net)
            apply_rules(paths, "", "", ())
        ensure_bridge(net)
        address = leases.lease(spec.id, net.subnet, net.gateway, None)
    try:
        pin_marker(paths, spec.id).touch()  # netdown.sh hands such a stop to the hook
        run(["ip", "-batch", "-"], input=(
            f"link add {veth} type veth peer name {inside} address {mac_address(address)} netns {pin}\n"
            f"link set {veth} master {net.bridge} up\n"))
        with entered(pin):
            run(["ip", "-batch", "-"], input=(
                f"addr add {ipam.format_ip(address)}/{net.subnet.prefix} dev {inside}\n"
                f"link set {inside} up\n" + ipv6_lines(net, address, inside, False)))
    except BaseException:
        with contextlib.suppress(Exception):
            if os.path.exists(f"/sys/class/net/{veth}"):
                remove_veth(veth)
            with ipam.Leases.open(net.leases_path(paths)) as leases:
                leases.release(spec.id)
        raise
    refresh_hosts(paths, net)
    if net.name not in connected(paths, spec.id):
        set_connected(paths, spec.id, [*connected(paths, spec.id), net.name])
    return inside


def disconnect(paths: Paths, spec: ContainerSpec, name: str) -> None:
    """The ethN on the network's bridge, its lease, and the hosts files without it."""
    net = network_named(paths, name)
    if spec.network.value != "bridge":
        raise SdctrError(f"container {spec.name} has --network {spec.network_mode}, not a bridge network",
                         status=1)
    if net.name == network_named(paths, spec.network_name).name:
        raise SdctrError(f"container {spec.name} cannot leave its own network {net.name}",
                         hint=f"sdctr rm -f {spec.name}, then run it on another", status=1)
    found = False
    for veth in extra_veths(spec.id).values():
        if os.path.basename(os.path.realpath(f"/sys/class/net/{veth}/master")) == net.bridge:
            remove_veth(veth)
            found = True
    with ipam.Leases.open(net.leases_path(paths)) as leases:
        found = bool(leases.release(spec.id)) or found
    names = connected(paths, spec.id)
    if net.name in names:
        set_connected(paths, spec.id, [n for n in names if n != net.name])
    elif not found:
        raise SdctrError(f"container {spec.name} is not connected to network {net.name}", status=1)
    if not extra_veths(spec.id):
        pin_marker(paths, spec.id).unlink(missing_ok=True)
    refresh_hosts(paths, net, also=[spec.id])


def connected(paths: Paths, cid: str) -> list[str]:
    """The networks `network connect` added, in order: the record's `connected` file."""
    try:
        return (paths.container_dir(cid) / "connected").read_text().split()
    except FileNotFoundError:
        return []


def set_connected(paths: Paths, cid: str, names: list[str]) -> None:
    """The record's `connected` file (sdctr/netup.sh hands a start to the hook where it exists)."""
    if names:
        write_file(paths.container_dir(cid), "connected", "".join(f"{n}\n" for n in names))
    else:
        (paths.container_dir(cid) / "connected").unlink(missing_ok=True)


def pin_marker(paths: Paths, cid: str) -> Path:
    """Beside the pin while the container has networks `connect` added: sdctr/netdown.sh, which
    knows only eth0's veth and lease, leaves such a stop to the Python hook."""
    pin = paths.netns(cid)
    return pin.with_name(pin.name + ".connected")


# --- down ---------------------------------------------------------------------------------------

def down(paths: Paths, cid: str) -> list[str]:
    """Everything of the container's on the network, each piece as it is found; what went."""
    removed = remove_elements(lambda comment: comment == cid)
    for veth in (veth_name(cid), *extra_veths(cid).values()):
        if os.path.exists(f"/sys/class/net/{veth}"):
            remove_veth(veth)
            removed.append(f"veth {veth}")
    pin_marker(paths, cid).unlink(missing_ok=True)
    for path in leases_dirs(paths):
        with ipam.Leases.open(path) as leases:
            address = leases.release(cid)
        if address:
            removed.append(f"lease {address} ({path.name})")
            user = next((n for n in user_networks(paths) if n.leases_path(paths) == path), None)
            if user:
                refresh_hosts(paths, user)
    if unpin(paths.netns(cid)):
        removed.append(f"netns {paths.netns(cid)}")
    return removed


def remove_veth(name: str) -> None:
    # deleting one end deletes its peer, wherever that is; gone meanwhile is fine
    r = run(["ip", "link", "del", name], check=False)
    if r.returncode != 0 and os.path.exists(f"/sys/class/net/{name}"):
        raise SdctrError(f"ip link del {name} failed: {r.stderr.strip()}")


def remove_elements(doomed: Callable[[str], bool], everywhere: bool = False) -> list[str]:
    """The port rules whose comment (a container's id) is doomed: in the configured back end's
    rules, or (`everywhere`, for gc) in both where their tool is installed."""
    chosen = firewall()
    removed = []
    if everywhere or chosen == NFTABLES:
        listing = list_table()
        gone = [e for e in nft.elements(listing) if doomed(e.comment)] if listing is not None else []
        if gone:
            run(["nft", "-f", "-"], input=nft.delete_elements_text(gone))
        removed += [f"rule {e.map} {{ {e.key} }} ({e.comment[:12]})" for e in gone]
    if everywhere or chosen == IPTABLES:
        saved = iptables_saved()
        ports = [r for r in saved.ports if doomed(r.comment)] if saved else []
        if ports:
            iptables_restore(iptables.delete_text(ports))
        removed += [f"rule {r.line[3:]}" for r in ports]
    return removed


def list_table() -> dict[str, Any] | None:
    """`nft -j list table ip sdctr`; None where there is no table (or no nft)."""
    try:
        r = run(["nft", "-j", "list", "table", nft.FAMILY, nft.TABLE], check=False)
    except SdctrError:  # nft is not installed: nothing of ours can be in a table
        return None
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def iptables_saved() -> iptables.Saved | None:
    """What `iptables-save` shows of ours; None where iptables is not installed or shows no chain
    of ours."""
    try:
        r = run(["iptables-save"], check=False)
    except SdctrError:
        return None
    saved = iptables.parse_save(r.stdout) if r.returncode == 0 else None
    return saved if saved and any(chain.startswith("SDCTR-") for _, chain in saved.chains) else None


def rules_present() -> bool:
    """The back end holds sdctr's rules (the table, or the chains)."""
    return (iptables_saved() if firewall() == IPTABLES else list_table()) is not None


def leases_dirs(paths: Paths) -> list[Path]:
    """Every network's lease directory (and one in the format before, <name>.json)."""
    d = paths.root / "networks"
    if not d.is_dir():
        return []
    return sorted({p.with_suffix("") if p.suffix == ".json" else p for p in d.iterdir()
                   if p.suffix == ".json" or (p.is_dir() and not p.name.startswith("."))})


def unpin(pin: Path) -> bool:
    """The pinned namespace's mount and file; True if there was one."""
    try:
        linux.umount2(pin, linux.MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    try:
        pin.unlink()
    except FileNotFoundError:
        return False
    return True


# --- gc -----------------------------------------------------------------------------------------

def gc(paths: Paths, live: Collection[str]) -> list[str]:
    """What no running container (`live`: their full ids) owns: veths, leases, map elements and
    pinned namespaces. What went, one line each."""
    short = {cid[:12] for cid in live}
    removed = remove_elements(lambda comment: comment not in live, everywhere=True)
    removed += dnsserver.gc(paths, (n.bridge for n in user_networks(paths)))
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir("/sys/class/net")):
            ours = name.startswith(VETH_PREFIX) or (name[:2] == "sd" and name[2:3].isdigit())
            if ours and len(name) == 15 and name[3:] not in short:
                remove_veth(name)
                removed.append(f"veth {name}")
    for path in leases_dirs(paths):
        with ipam.Leases.open(path) as leases:
            for cid in [c for c in leases.leases if c not in live]:
                removed.append(f"lease {leases.release(cid)} ({path.name}, {cid[:12]})")
    pins = paths.run / "netns"
    for name in sorted(os.listdir(pins)) if pins.is_dir() else ():
        if name.split(".")[0] not in live and unpin(pins / name):  # (and <id>.connected: pin_marker)
            removed.append(f"netns {pins / name}")
    if not any(n.subnet6 for n in user_networks(paths)) and has_table6():  # a `network rm` killed
        run(["nft", "-f", "-"], input=nft.delete_table6_text())
        removed.append(f"nft table {nft.FAMILY6} {nft.TABLE} (no IPv6 network left)")
    return removed


def has_table6() -> bool:
    try:
        return run(["nft", "list", "table", nft.FAMILY6, nft.TABLE], check=False).returncode == 0
    except SdctrError:  # no nft
        return False


def settings(paths: Paths, spec: ContainerSpec) -> dict[str, Any]:
    """inspect's NetworkSettings, as Docker shows them: empty while the container is not up."""
    net = network_named(paths, spec.network_name)
    address = ipam.lease_of(net.leases_path(paths), spec.id)
    ports: dict[str, list[dict[str, str]] | None] = {}
    for p in spec.ports:
        ports.setdefault(f"{p.container_port}/{p.proto}", []).append(  # type: ignore[union-attr]
            {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
    endpoint = {"IPAddress": address or "", "IPPrefixLen": net.subnet.prefix if address else 0,
                "Gateway": net.gateway_text if address else "",
                "GlobalIPv6Address": net.address6(ipam.parse_ip(address)) if address else "",
                "GlobalIPv6PrefixLen": net.subnet6.prefix if address and net.subnet6 else 0,
                "IPv6Gateway": net.gateway6_text if address else "",
                "MacAddress": (spec.mac_address or mac_address(ipam.parse_ip(address))) if address else ""}
    networks = {net.name: {"NetworkID": net.name, **endpoint}}
    for other in user_networks(paths) if address else ():  # those `network connect` added
        more = ipam.lease_of(other.leases_path(paths), spec.id) if other.name != net.name else None
        if more:
            networks[other.name] = {"NetworkID": other.name, "IPAddress": more,
                                    "IPPrefixLen": other.subnet.prefix, "Gateway": other.gateway_text,
                                    "MacAddress": mac_address(ipam.parse_ip(more))}
    for name in connected(paths, spec.id):  # recorded while it was not running: no address yet
        networks.setdefault(name, {"NetworkID": name, "IPAddress": "", "IPPrefixLen": 0, "Gateway": "",
                                   "MacAddress": ""})
    return {"Bridge": net.bridge, "SandboxKey": str(paths.netns(spec.id)) if address else "",
            "Ports": ports, **endpoint, "Networks": networks}

