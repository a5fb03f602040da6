"""A user network's DNS server: dnsmasq as a transient systemd unit per network, as libvirt runs
one per network, bound to the bridge's gateway. It answers the members' names (name, short id,
--network-alias) from one hosts file the hooks rewrite on every member change (then SIGHUP: it
re-reads the file and drops its cache), and forwards every other name to the host's servers
(dnsmasq reads the host's /etc/resolv.conf and follows its changes; it runs in the host's
network namespace, so a 127.0.0.53 stub is reachable from it). Plain names (no dot) are never
forwarded (--domain-needed): a name of no member is "not found" at once, not after an upstream
timeout.

    unit   sdctr-dns-<bridge>.service (Type=forking: dnsmasq's parent exits once it listens, so
           the start job's end means it answers), collected when it stops or fails
    files  <bridge>.hosts and .pid in Paths.dns (/run/sdctr-dns): outside <run> (0700), because
           dnsmasq reads the hosts file after it dropped root to its own user

Started by the start of a network's first member (under the network's lock, with the bridge),
it lives as long as the bridge: `network rm` stops it, `system gc` stops one whose network is
gone. Where dnsmasq is not installed the members' /etc/hosts carry the names
(sdctr.net.setup.refresh_hosts)."""

from __future__ import annotations

import os
from pathlib import Path

TYPE_CHECKING = False  # typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Iterable

    from sdctr.net.network import Network
    from sdctr.paths import Paths
    from sdctr.systemd.properties import Property

UNIT_PREFIX = "sdctr-dns-"
DNSMASQ = "dnsmasq"


def unit_name(bridge: str) -> str:
    return f"{UNIT_PREFIX}{bridge}.service"


def hosts_path(paths: Paths, bridge: str) -> Path:
    return paths.dns / f"{bridge}.hosts"


def pid_path(paths: Paths, bridge: str) -> Path:
    return paths.dns / f"{bridge}.pid"


def command(paths: Paths, net: Network, dnsmasq: str) -> list[str]:
    """dnsmasq's argv: no configuration file of the host's (/etc/dnsmasq.conf may serve another
    purpose), no DHCP, listening on the gateway's addresses alone (not on the host's loopback)."""
    listen = [f"--listen-address={net.gateway_text}"]
    if net.subnet6:
        listen.append(f"--listen-address={net.gateway6_text}")
    return [dnsmasq, "--conf-file=/dev/null", "--bind-interfaces", *listen, "--no-hosts",
            f"--addn-hosts={hosts_path(paths, net.bridge)}", "--domain-needed",
            f"--pid-file={pid_path(paths, net.bridge)}"]


def properties(paths: Paths, net: Network, dnsmasq: str) -> list[Property]:
    argv = command(paths, net, dnsmasq)
    return [
        ("Description", "s", f"sdctr DNS for network {net.name}"),
        ("Type", "s", "forking"),
        ("PIDFile", "s", str(pid_path(paths, net.bridge))),
        ("ExecStart", "a(sasb)", [(argv[0], argv, False)]),
        ("Restart", "s", "on-failure"),
        ("CollectMode", "s", "inactive-or-failed"),
    ]


def hosts_text(members: Iterable[tuple[str, str]]) -> str:
    """The hosts file: "address<TAB>names" a line, as /etc/hosts."""
    return "".join(f"{address}\t{names}\n" for address, names in members)


def write_hosts(paths: Paths, bridge: str, members: Iterable[tuple[str, str]]) -> None:
    """The network's hosts file, whole (a temporary renamed over it: dnsmasq opens it by name)."""
    paths.dns.mkdir(mode=0o755, exist_ok=True)
    path = hosts_path(paths, bridge)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, 0o644)  # readable by dnsmasq's user, whatever the umask
        f.write(hosts_text(members))
    os.rename(tmp, path)


def running_pid(paths: Paths, bridge: str) -> int | None:
    """The network's dnsmasq, from its pid file (systemd removes the file when the unit stops),
    checked by the process's name: a pid reused by another process is not it."""
    try:
        pid = int(pid_path(paths, bridge).read_text().split()[0])
        with open(f"/proc/{pid}/comm") as f:
            return pid if f.read().strip() == DNSMASQ else None
    except (OSError, ValueError, IndexError):
        return None


def ensure(paths: Paths, net: Network, members: Iterable[tuple[str, str]], dnsmasq: str,
           restart: bool = False) -> None:
    """The network's dnsmasq answering `members`: its hosts file written, then the running one
    told (SIGHUP) or the unit started and waited for (a forking start ends when it listens: a few
    ms, once per network and boot). `restart`: the bridge was made now, so a dnsmasq still
    running listens on an address that went with the old one. The caller holds the network's
    lock (two first members must not both start the unit)."""
    write_hosts(paths, net.bridge, members)
    pid = running_pid(paths, net.bridge)
    if pid and not restart:
        os.kill(pid, 1)  # SIGHUP: the hosts file re-read, the cache dropped
        return
    from sdctr.systemd.manager import Systemd

    sd = Systemd()
    if pid:
        sd.stop(unit_name(net.bridge))
    sd.start_transient(unit_name(net.bridge), properties(paths, net, dnsmasq), sd.host())


def stop(paths: Paths, bridge: str) -> bool:
    """The network's unit stopped (not loaded is stopped) and its files removed; True if it ran."""
    from sdctr.systemd.manager import Systemd

    ran = running_pid(paths, bridge) is not None
    Systemd().stop(unit_name(bridge))
    for path in (hosts_path(paths, bridge), pid_path(paths, bridge)):
        path.unlink(missing_ok=True)
    return ran


def gc(paths: Paths, bridges: Iterable[str]) -> list[str]:
    """The units and files of networks that are gone (`bridges`: those of the networks there
    are), as a `network rm` killed halfway leaves them; one line each. A unit is this root's only
    where its hosts file is in this root's Paths.dns (written before the unit starts, removed after
    it stops): unit names are host-wide, and another root's networks are unknown here."""
    from sdctr.log import SdctrError
    from sdctr.systemd.bus import BusError
    from sdctr.systemd.manager import Systemd

    known = set(bridges)
    removed = []
    try:
        units = Systemd().active_states(f"{UNIT_PREFIX}*.service")
    except (SdctrError, BusError, OSError):  # no systemd to ask: no unit of ours either
        units = {}
    for unit in sorted(units):
        bridge = unit[len(UNIT_PREFIX):-len(".service")]
        if bridge not in known and hosts_path(paths, bridge).exists():
            stop(paths, bridge)
            removed.append(f"unit {unit}")
    for path in sorted(paths.dns.iterdir()) if paths.dns.is_dir() else ():
        if path.name.split(".")[0] not in known:
            path.unlink(missing_ok=True)
            removed.append(f"file {path}")
    return removed
