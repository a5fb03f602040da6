"""Addresses: a network's leases in a directory (<root>/networks/<name>/, locked through
<name>.lock), one small file per container, as CNI's host-local plugin keeps them:

    <root>/networks/bridge/<container id>   "10.89.0.7"
    <root>/networks/bridge/.last            the address handed out last

so that the unit's shell hooks (sdctr/netup.sh, sdctr/netdown.sh) take and release one without
Python.
Addresses are IPv4 and handled as integers (the ipaddress module is ~3 ms of each start); the
choice of an address (pick) is pure. A new lease takes the next free address after the last one
handed out, so an address just released is not reused at once (a peer's ARP cache or conntrack
entry may still point at the old container).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
from pathlib import Path

from sdctr import state
from sdctr.log import SdctrError
from sdctr.record import Record

TYPE_CHECKING = False  # typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Collection, Iterator


def parse_ip(text: str) -> int:
    """A dotted quad as an integer; ValueError if it is not one."""
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
        raise ValueError(f"{text!r} is not an IPv4 address")
    value = 0
    for p in parts:
        value = value << 8 | int(p)
    return value


def format_ip(value: int) -> str:
    return ".".join(str(value >> shift & 255) for shift in (24, 16, 8, 0))


class Subnet(Record):
    network: int  # the first address, host bits zero
    prefix: int  # 0..32

    @classmethod
    def parse(cls, text: str) -> Subnet:
        """"10.89.0.0/16"; ValueError for anything else (host bits set included)."""
        address, slash, prefix = text.partition("/")
        if not slash or not prefix.isdigit() or not 8 <= int(prefix) <= 30:
            raise ValueError(f"{text!r} is not an IPv4 subnet with a prefix length of 8 to 30")
        subnet = cls(parse_ip(address), int(prefix))
        if subnet.network & ~subnet.mask & 0xFFFFFFFF:
            raise ValueError(f"{text!r} has host bits set (did you mean {subnet.canonical}?)")
        return subnet

    @property
    def mask(self) -> int:
        return (0xFFFFFFFF << (32 - self.prefix)) & 0xFFFFFFFF

    @property
    def canonical(self) -> str:
        return f"{format_ip(self.network & self.mask)}/{self.prefix}"

    @property
    def text(self) -> str:
        return f"{format_ip(self.network)}/{self.prefix}"

    @property
    def broadcast(self) -> int:
        return self.network | (~self.mask & 0xFFFFFFFF)

    @property
    def first_host(self) -> int:
        return self.network + 1

    def __contains__(self, address: object) -> bool:
        return isinstance(address, int) and address & self.mask == self.network

    def overlaps(self, other: Subnet) -> bool:
        mask = self.mask if self.prefix <= other.prefix else other.mask
        return self.network & mask == other.network & mask


def pick(subnet: Subnet, gateway: int, taken: Collection[int], last: int | None = None,
         requested: int | None = None, *, preferred: int | None = None) -> int:
    """The address for a new lease: `requested` if it is free and usable, else `preferred` (the
    container's address at its last start: a restart or a reboot keeps it, where it is still
    free), else the first free one after `last` (wrapping around). The network, broadcast and
    gateway addresses are never handed out."""
    if requested is not None:
        if requested not in subnet or requested in (subnet.network, subnet.broadcast):
            raise SdctrError(f"address {format_ip(requested)} is not a host address of the network's "
                             f"subnet {subnet.text}")
        if requested == gateway:
            raise SdctrError(f"address {format_ip(requested)} is the network's gateway")
        if requested in taken:
            raise SdctrError(f"address {format_ip(requested)} is already in use")
        return requested
    low, high = subnet.network + 1, subnet.broadcast - 1
    if preferred is not None and low <= preferred <= high and preferred != gateway and preferred not in taken:
        return preferred
    start = last + 1 if last is not None and low <= last < high else low
    for candidate in itertools.chain(range(start, high + 1), range(low, start)):
        if candidate != gateway and candidate not in taken:
            return candidate
    raise SdctrError(f"no free address left in {subnet.text}",
                     hint="remove stopped containers, or configure a larger subnet")


class Leases:
    """A network's leases: a directory with one file per container, named by its id and holding
    its address, and `.last`, the address handed out last (CNI host-local keeps them alike, one
    file per address). Taking one happens under the lock <dir>.lock (use `with Leases.open(dir)`);
    releasing one is removing its file, which sdctr/netdown.sh does without Python, and
    sdctr/netup.sh takes one under the same lock with flock(1)."""

    def __init__(self, path: Path):
        self.path = path
        self.leases: dict[str, str] = read_dir(path)
        try:
            self.last: str | None = (path / LAST).read_text().strip() or None
        except FileNotFoundError:
            self.last = None

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: Path) -> Iterator[Leases]:
        """The leases, locked while the block runs."""
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(lock_path(path), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            migrate(path)
            yield cls(path)

    def lease(self, cid: str, subnet: Subnet, gateway: int, requested: int | None = None, *,
              preferred: int | None = None) -> int:
        """The container's address: the one it holds, or a new one (`preferred` if free)."""
        held = self.leases.get(cid)
        if held is not None and (requested is None or parse_ip(held) == requested):
            return parse_ip(held)
        taken = {parse_ip(a) for c, a in self.leases.items() if c != cid}
        address = pick(subnet, gateway, taken, parse_ip(self.last) if self.last else None, requested,
                       preferred=preferred)
        self.leases[cid] = self.last = format_ip(address)
        write_atomic(self.path / cid, self.last + "\n")
        write_atomic(self.path / LAST, self.last + "\n")
        return address

    def release(self, cid: str) -> str | None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / cid).unlink()
        return self.leases.pop(cid, None)


LAST = ".last"


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def write_atomic(path: Path, text: str) -> None:
    """A lease or .last, whole or not at all; not fsync-ed (nor by netup.sh): it is on the start
    path, and a lease a crash empties was a container's that the crash stopped, which takes an
    address again when it starts."""
    state.write_atomic(path, text, mode=0o644, durable=False)


def read_dir(path: Path) -> dict[str, str]:
    """Container id -> address, as the directory holds them (no lock needed: files appear by
    rename and go by unlink)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return {}
    leases = {}
    for name in names:
        if name.startswith("."):
            continue
        try:
            address = (path / name).read_text().strip()
        except FileNotFoundError:  # released meanwhile
            continue
        if address:
            leases[name] = address
    return leases


def migrate(path: Path) -> None:
    """The one-file format before (<dir>.json: {"last": ..., "leases": {id: address}}), moved
    into the directory once, under the lock."""
    old = path.with_name(path.name + ".json")
    if not old.exists():
        return
    try:
        data = json.loads(old.read_text())
    except ValueError:
        data = {}
    leases = data.get("leases") if isinstance(data, dict) else None
    for cid, address in (leases.items() if isinstance(leases, dict) else ()):
        if isinstance(address, str) and not (path / cid).exists():
            write_atomic(path / cid, address + "\n")
    last = data.get("last") if isinstance(data, dict) else None
    if isinstance(last, str):
        write_atomic(path / LAST, last + "\n")
    old.unlink()


def read(path: Path) -> dict[str, str]:
    """Container id -> address, without the lock (a reader such as inspect)."""
    return read_dir(path)


def lease_of(path: Path, cid: str) -> str | None:
    try:
        return (path / cid).read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


# --- IPv6 (a user network's, with `network create --ipv6`) ---------------------------------------
# A container's IPv6 address is not leased on its own: it is the IPv4 lease's offset in the IPv4
# subnet, added to the IPv6 subnet's first address (10.90.0.7 in 10.90.0.0/16 is fd00:90::7 in
# fd00:90::/64), so it is as distinct as the IPv4 one and goes with it, leaving nothing of its own
# to collect. The ipaddress module (~3 ms) is imported only for such a network.

class Subnet6(Record):
    network: int  # the first address, host bits zero
    prefix: int

    @classmethod
    def parse(cls, text: str) -> Subnet6:
        """"fd00:90::/64"; ValueError for anything else (host bits set included)."""
        import ipaddress

        try:
            net = ipaddress.IPv6Network(text, strict=True)
        except ValueError as e:
            raise ValueError(f"{text!r} is not an IPv6 subnet: {e}") from None
        if "/" not in text:
            raise ValueError(f"{text!r} is not an IPv6 subnet: no prefix length (example: fd00:90::/64)")
        return cls(int(net.network_address), net.prefixlen)

    @property
    def text(self) -> str:
        return f"{format_ip6(self.network)}/{self.prefix}"

    def overlaps(self, other: Subnet6) -> bool:
        shift = 128 - min(self.prefix, other.prefix)
        return self.network >> shift == other.network >> shift

    def fits(self, subnet: Subnet) -> bool:
        """Room for every host address of the IPv4 `subnet` (the offsets are shared)."""
        return 128 - self.prefix >= 32 - subnet.prefix

    def address(self, subnet: Subnet, address: int) -> int:
        """The IPv6 address of the IPv4 `address` of `subnet`."""
        return self.network + (address - subnet.network)


def format_ip6(value: int) -> str:
    import ipaddress

    return ipaddress.IPv6Address(value).compressed
