"""/etc/hosts and /etc/resolv.conf for a container on a bridge network, as Docker writes them:
the container's own address under its hostname, and the host's name servers, where a stub
resolver on the host's loopback (systemd-resolved's 127.0.0.53) is replaced by the servers it
forwards to (/run/systemd/resolve/resolv.conf): the container's loopback is not the host's."""

from __future__ import annotations

from pathlib import Path

TYPE_CHECKING = False  # typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Iterable

RESOLVED_UPSTREAM = Path("/run/systemd/resolve/resolv.conf")
FALLBACK_SERVERS = ("8.8.8.8", "8.8.4.4")  # Docker's, when the host names none that a container reaches


def hosts(hostname: str, address: str, others: Iterable[tuple[str, str]] = (),
          extra: Iterable[tuple[str, str]] = ()) -> str:
    """The container's own line, --add-host's, then (on a user network) each other member's:
    address, names."""
    return ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{address}\t{hostname}\n" + "".join(f"{a}\t{names}\n" for a, names in (*extra, *others)))


def extra_hosts(add_hosts: Iterable[str], gateway: str) -> list[tuple[str, str]]:
    """--add-host's "NAME:ADDRESS" as (address, name), host-gateway as `gateway` (Docker's: the
    host's address on the bridge)."""
    found = []
    for entry in add_hosts:
        name, _, address = entry.partition(":")
        found.append((gateway if address == "host-gateway" else address, name))
    return found


def _is_loopback(server: str) -> bool:
    return server.startswith("127.") or server == "::1"


def _servers(text: str) -> list[str]:
    return [ln.split()[1] for ln in text.splitlines()
            if ln.split()[:1] == ["nameserver"] and len(ln.split()) > 1]


def resolv_conf(host: str, upstream: str | None = None) -> str:
    """The container's resolv.conf from the host's text (`host`) and, if the host's names a
    loopback server, the stub's upstream file's text (`upstream`)."""
    servers = _servers(host)
    if not any(_is_loopback(s) for s in servers):
        return host if host.endswith("\n") or not host else host + "\n"
    reachable = [s for s in servers if not _is_loopback(s)]
    reachable += [s for s in _servers(upstream or "") if not _is_loopback(s) and s not in reachable]
    kept = [ln for ln in host.splitlines() if ln.split()[:1] != ["nameserver"]]
    head = "# the host's resolv.conf, its loopback stub replaced by the servers it forwards to\n"
    return head + "".join(f"nameserver {s}\n" for s in reachable or FALLBACK_SERVERS) + \
        "".join(f"{ln}\n" for ln in kept if not ln.startswith("#"))


def via_server(text: str, server: str, unit: str) -> str:
    """A resolv.conf with `server` (a user network's DNS server, `unit`, on its gateway) as its
    only name server, the search list and options of `text` kept."""
    kept = [ln for ln in text.splitlines() if ln.split()[:1] != ["nameserver"] and not ln.startswith("#")]
    return (f"# the network's DNS server ({unit}): its members by name, the rest forwarded\n"
            f"nameserver {server}\n" + "".join(f"{ln}\n" for ln in kept))


def read_host_files() -> tuple[str, str | None]:
    try:
        host = Path("/etc/resolv.conf").read_text()
    except OSError:
        host = ""
    try:
        upstream = RESOLVED_UPSTREAM.read_text()
    except OSError:
        upstream = None
    return host, upstream
