"""systemd's resource properties as a user writes them, `KEY=VALUE` (`sdctr run --property
MemoryHigh=200M`, a declared container's `properties:`): the ones sdctr passes on, each parsed as
systemd-run parses it (bus_append_unit_property_assignment, systemd's src/shared/bus-unit-util.c)
into the D-Bus form that StartTransientUnit and SetUnitProperties take, and written back as a
unit file's line (the generator's units, and a systemd too old for transient hooks).

The D-Bus signature depends on the property's type: a size is `t` (MemoryHigh=200M), a share of
the host's memory its `...Scale` twin as `u` (MemoryHigh=50%), a CPU list a bit mask `ay`
(AllowedCPUs=0-1), an address list `a(iayu)` (IPAddressDeny=any), a device's limit `a(st)`
(IOReadBandwidthMax=/dev/sda 1M), a resource limit two `t`s, hard and soft (LimitNOFILE=1024:4096).

Pure and cheap (`run` imports it): the form is checked here, so a typo stops the run with exit
status 125 before anything is made; the meaning (a controller this host lacks, a device that is
not there) is systemd's to check, and its refusal comes back from the start as one line.
"""

from __future__ import annotations

import re

from sdctr.log import SdctrError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

Property = tuple[str, str, "Any"]  # as sdctr.systemd.properties': (name, D-Bus signature, value)

INFINITY = 2**64 - 1  # CGROUP_LIMIT_MAX, RLIM_INFINITY, USEC_INFINITY
UINT32_MAX = 2**32 - 1
AF_INET, AF_INET6 = 2, 10

SIZE, WEIGHT, CPUSET, BOOL, ADDRESSES, DEVICE_LIMIT, DEVICE_WEIGHT, PERIOD, RLIMIT, INT = (
    "size", "weight", "cpuset", "bool", "addresses", "device-limit", "device-weight", "period", "rlimit",
    "int")

RLIMITS = ("CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NOFILE", "AS", "NPROC", "MEMLOCK", "LOCKS",
           "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME")

# the properties passed on, by kind; the cgroup's can change on a running unit (SetUnitProperties,
# `sdctr update --property`), the process's (resource limits, CPUAffinity, OOMScoreAdjust, Nice)
# only at the next start
PROPERTIES: dict[str, str] = {
    **dict.fromkeys(("MemoryMin", "MemoryLow", "MemoryHigh", "MemorySwapMax"), SIZE),
    **dict.fromkeys(("IOWeight", "StartupIOWeight", "StartupCPUWeight"), WEIGHT),
    **dict.fromkeys(("BlockIOWeight", "StartupBlockIOWeight"), WEIGHT),
    **dict.fromkeys(("AllowedCPUs", "AllowedMemoryNodes", "CPUAffinity"), CPUSET),
    **dict.fromkeys(("CPUAccounting", "MemoryAccounting", "IOAccounting", "BlockIOAccounting",
                     "TasksAccounting", "IPAccounting"), BOOL),
    **dict.fromkeys(("IPAddressAllow", "IPAddressDeny"), ADDRESSES),
    **dict.fromkeys(("IOReadBandwidthMax", "IOWriteBandwidthMax", "IOReadIOPSMax", "IOWriteIOPSMax",
                     "BlockIOReadBandwidth", "BlockIOWriteBandwidth"), DEVICE_LIMIT),
    **dict.fromkeys(("IODeviceWeight", "BlockIODeviceWeight"), DEVICE_WEIGHT),
    "CPUQuotaPeriodSec": PERIOD,
    **dict.fromkeys((f"Limit{r}" for r in RLIMITS), RLIMIT),
    **dict.fromkeys(("OOMScoreAdjust", "Nice"), INT),
}
NOT_LIVE = (RLIMIT, INT)  # and CPUAffinity: the process's, set by systemd when it starts it
# what sdctr sets from its own flags: given here, the flag is the way (its conversions by cgroup
# version, its record in inspect)
OWNED = {"MemoryMax": "--memory", "MemoryLimit": "--memory", "CPUShares": "--cpu-shares",
         "CPUWeight": "--cpu-shares", "CPUQuota": "--cpus", "TasksMax": "--pids-limit",
         "DeviceAllow": "--device", "DevicePolicy": "--device or --privileged", "Slice": "",
         "Delegate": ""}


def supported() -> str:
    """The supported names, for an error's hint: Limit* as one."""
    names = [n for n in PROPERTIES if not n.startswith("Limit")]
    return ", ".join([*names, "Limit" + "|".join(RLIMITS)])


def live(name: str) -> bool:
    """Whether SetUnitProperties changes it on a running unit."""
    return name in PROPERTIES and PROPERTIES[name] not in NOT_LIVE and name != "CPUAffinity"


def split(field: str, text: str) -> tuple[str, str]:
    """KEY=VALUE, KEY a supported property: (KEY, VALUE), or the error a user can act on."""
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise SdctrError(f"{field} {text!r} is not KEY=VALUE", hint="example: --property MemoryHigh=200M")
    if key in OWNED:
        flag = OWNED[key]
        raise SdctrError(f"{field} {text!r}: {key} is set by sdctr itself",
                         hint=f"use {flag} instead" if flag else None)
    if key not in PROPERTIES:
        raise SdctrError(f"{field} {text!r}: {key} is not a property sdctr passes on",
                         hint=f"the properties: {supported()}")
    return key, value.strip()


def parse(field: str, text: str) -> list[Property]:
    """KEY=VALUE as the D-Bus properties systemd-run would send (one, or two for a resource
    limit); an error names `field` (the flag or the YAML key) and the assignment."""
    key, value = split(field, text)
    try:
        return _PARSERS[PROPERTIES[key]](key, value)
    except ValueError as e:
        raise SdctrError(f"{field} {text!r}: {e}", hint=_EXAMPLES.get(PROPERTIES[key])) from None


def normalize(field: str, text: str) -> str:
    """The assignment checked, as it is recorded: `KEY=VALUE`, spaces around both trimmed."""
    parse(field, text)
    key, value = split(field, text)
    return f"{key}={value}"


_EXAMPLES = {SIZE: "a size in bytes (K, M, G, T: 1024s), a share of the host's memory (50%), or infinity",
             WEIGHT: "a whole number: 1..10000 (BlockIOWeight: 10..1000)",
             CPUSET: "CPU or node numbers and ranges, e.g. 0-1,3", BOOL: "yes or no",
             ADDRESSES: "addresses or prefixes (10.0.0.0/8 ::1), or any, localhost, link-local, multicast",
             DEVICE_LIMIT: "a device and a value, e.g. /dev/sda 10M (K, M, G: 1000s), or infinity",
             DEVICE_WEIGHT: "a device and a weight, e.g. /dev/sda 200",
             PERIOD: "a time span, e.g. 10ms", RLIMIT: "SOFT[:HARD], numbers or infinity, e.g. 1024:4096",
             INT: "a whole number"}


# --- the kinds: systemd-run's parsers ------------------------------------------------------------

# patterns, not compiled ones: re compiles them at first use (its cache), not at every import of
# the generator, which renders no --property in most boots
_SIZE = r"(?i)(\d+(?:\.\d+)?)\s*([KMGTPE]?)B?"
_PERCENT = r"(\d{1,3})(?:\.(\d{1,2}))?%"


def size(value: str, base: int = 1024) -> int:
    """systemd's parse_size: bytes with an optional K, M, G, T, P or E (of `base`)."""
    m = re.fullmatch(_SIZE, value)
    if not m:
        raise ValueError(f"{value!r} is not a size")
    factor = base ** " KMGTPE".index(m.group(2).upper() or " ")
    number = float(m.group(1)) * factor
    if number >= INFINITY:
        raise ValueError(f"{value!r} is too large")
    return int(number)


def permyriad(value: str) -> int | None:
    """50% (or 12.34%) as parts in 10,000, or None when it is not a percentage."""
    m = re.fullmatch(_PERCENT, value)
    if not m:
        return None
    result = int(m.group(1)) * 100 + int((m.group(2) or "0").ljust(2, "0"))
    if result > 10000:
        raise ValueError(f"{value!r} is more than 100%")
    return result


def _size(key: str, value: str) -> list[Property]:
    if value == "infinity":
        return [(key, "t", INFINITY)]
    if value == "":  # systemd's reset: no protection for the floors, no limit for the others
        return [(key, "t", 0 if key in ("MemoryMin", "MemoryLow") else INFINITY)]
    share = permyriad(value)
    if share is not None:  # scaled to 2^32-1 for 100%: PID 1 applies it to the host's memory
        return [(f"{key}Scale", "u", (share * UINT32_MAX + 5000) // 10000)]
    return [(key, "t", size(value))]


def _number(value: str, low: int, high: int) -> int:
    if not re.fullmatch(r"-?\d+", value):
        raise ValueError(f"{value!r} is not a whole number")
    n = int(value)
    if not low <= n <= high:
        raise ValueError(f"{n} is outside {low}..{high}")
    return n


# a weight's range is systemd's to check ("IOWeight= value out of range"): its own word, and where
# a declared unit has it, its warning in the journal
def _weight(key: str, value: str) -> list[Property]:
    return [(key, "t", _number(value, 0, INFINITY))]


def cpu_list(value: str) -> list[int]:
    """0-3,5 (commas or spaces): the numbers, as parse_cpu_set reads them."""
    numbers: set[int] = set()
    for part in re.split(r"[\s,]+", value.strip()):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"{part!r} is not a number or a range")
        low, high = int(m.group(1)), int(m.group(2) or m.group(1))
        if high < low or high >= 8192:
            raise ValueError(f"{part!r} is not a range within 0..8191")
        numbers.update(range(low, high + 1))
    return sorted(numbers)


def cpu_mask(numbers: list[int]) -> bytes:
    """cpu_set_to_dbus: bit n of byte n // 8 for each number."""
    mask = bytearray((max(numbers) // 8 + 1) if numbers else 0)
    for n in numbers:
        mask[n // 8] |= 1 << (n % 8)
    return bytes(mask)


def cpu_ranges(mask: bytes) -> str:
    """A bit mask as the shortest list: 0-3,5."""
    numbers = [i * 8 + b for i, byte in enumerate(mask) for b in range(8) if byte >> b & 1]
    parts: list[str] = []
    for n in numbers:
        if parts and int(parts[-1].rpartition("-")[2]) == n - 1:
            parts[-1] = f"{parts[-1].partition('-')[0]}-{n}"
        else:
            parts.append(str(n))
    return ",".join(parts)


def _cpuset(key: str, value: str) -> list[Property]:
    return [(key, "ay", cpu_mask(cpu_list(value)))]


_TRUE, _FALSE = ("1", "yes", "y", "true", "t", "on"), ("0", "no", "n", "false", "f", "off")


def _bool(key: str, value: str) -> list[Property]:
    if value.lower() not in _TRUE + _FALSE:
        raise ValueError(f"{value!r} is not yes or no")
    return [(key, "b", value.lower() in _TRUE)]


# systemd's words for address lists: each is both families' prefixes
_ADDRESS_WORDS = {"any": ("0.0.0.0/0", "::/0"), "localhost": ("127.0.0.0/8", "::1/128"),
                  "link-local": ("169.254.0.0/16", "fe80::/64"), "multicast": ("224.0.0.0/4", "ff00::/8")}


def _addresses(key: str, value: str) -> list[Property]:
    import socket

    words = _ADDRESS_WORDS.get(value, value.split())
    entries = []
    for word in words:
        address, slash, length = word.partition("/")
        for family, bits in ((AF_INET, 32), (AF_INET6, 128)):
            try:
                packed = socket.inet_pton(socket.AF_INET if family == AF_INET else socket.AF_INET6, address)
            except OSError:
                continue
            prefix = _number(length, 0, bits) if slash else bits
            entries.append((family, packed, prefix))
            break
        else:
            raise ValueError(f"{word!r} is not an address or a prefix")
    return [(key, "a(iayu)", entries)]  # none: the list emptied, as systemd's KEY=


def _device(value: str) -> tuple[str, str]:
    path, _, amount = value.partition(" ")
    if not path.startswith("/") or not amount.strip():
        raise ValueError("not a device's path and a value")
    return path, amount.strip()


def _device_limit(key: str, value: str) -> list[Property]:
    if value == "":
        return [(key, "a(st)", [])]
    path, amount = _device(value)
    return [(key, "a(st)", [(path, INFINITY if amount == "infinity" else size(amount, 1000))])]


def _device_weight(key: str, value: str) -> list[Property]:
    if value == "":
        return [(key, "a(st)", [])]
    path, amount = _device(value)
    return [(key, "a(st)", [(path, _number(amount, 0, INFINITY))])]


_SPAN = r"(\d+(?:\.\d+)?)\s*(us|usec|ms|msec|s|sec|m|min|h|hr)?"
_USEC = {None: 1_000_000, "us": 1, "usec": 1, "ms": 1000, "msec": 1000, "s": 1_000_000, "sec": 1_000_000,
         "m": 60_000_000, "min": 60_000_000, "h": 3_600_000_000, "hr": 3_600_000_000}


def timespan(value: str) -> int:
    """systemd's parse_sec for the common units (10ms, 1s, 2min; a bare number is seconds): µs."""
    parts = re.findall(_SPAN, value)
    if not parts or "".join(n + (u or "") for n, u in parts) != value.replace(" ", ""):
        raise ValueError(f"{value!r} is not a time span")
    return int(sum(float(n) * _USEC[u or None] for n, u in parts))


def _period(key: str, value: str) -> list[Property]:
    return [("CPUQuotaPeriodUSec", "t", INFINITY if value in ("", "infinity") else timespan(value))]


def _rlimit_value(value: str) -> int:
    if value in ("infinity", "unlimited", "-1"):
        return INFINITY
    if not value.isdigit():
        raise ValueError(f"{value!r} is not a number or infinity")
    return int(value)


def _rlimit(key: str, value: str) -> list[Property]:
    """SOFT[:HARD] (one value: both), as systemd's rlimit_parse: the hard limit as KEY, the
    soft one as KEYSoft."""
    soft_text, colon, hard_text = value.partition(":")
    soft = _rlimit_value(soft_text)
    hard = _rlimit_value(hard_text) if colon else soft
    if soft > hard:
        raise ValueError("the soft limit is above the hard limit")
    return [(key, "t", hard), (f"{key}Soft", "t", soft)]


def _int(key: str, value: str) -> list[Property]:
    low, high = {"OOMScoreAdjust": (-1000, 1000), "Nice": (-20, 19)}[key]
    return [(key, "i", _number(value, low, high))]


_PARSERS = {SIZE: _size, WEIGHT: _weight, CPUSET: _cpuset, BOOL: _bool,
            ADDRESSES: _addresses, DEVICE_LIMIT: _device_limit, DEVICE_WEIGHT: _device_weight,
            PERIOD: _period, RLIMIT: _rlimit, INT: _int}


# --- back into a unit file's text ----------------------------------------------------------------

# every D-Bus name the table's properties are sent as: one set lookup per property of a unit
# tells sdctr's own (rendered by sdctr.systemd.properties) from these
BUS_NAMES = frozenset((*PROPERTIES, *(f"{n}Scale" for n, k in PROPERTIES.items() if k == SIZE),
                       *(f"{n}Soft" for n, k in PROPERTIES.items() if k == RLIMIT), "CPUQuotaPeriodUSec"))


def file_line(name: str, value: Any, soft: int | None = None) -> str | None:  # noqa: PLR0911 - one per kind
    """A property of this table, given by its D-Bus name and value, as a unit file's `Key=value`
    line; None for a name not of this table. A resource limit's soft half (LimitXSoft) is given
    with its hard one (`soft`), and alone renders as nothing ("")."""
    if name not in BUS_NAMES:
        return None
    if name.endswith("Scale") and name[:-5] in PROPERTIES:
        return f"{name[:-5]}={value * 10000 // UINT32_MAX / 100:g}%"
    if name == "CPUQuotaPeriodUSec":
        return "CPUQuotaPeriodSec=" + ("" if value == INFINITY else f"{value}us")
    if name.startswith("Limit") and name.endswith("Soft") and name[:-4] in PROPERTIES:
        return ""
    kind = PROPERTIES.get(name)
    if kind is None:
        return None

    def text(n: int) -> str:
        return "infinity" if n == INFINITY else str(n)

    if kind == RLIMIT:
        return f"{name}={text(value if soft is None else soft)}:{text(value)}"
    if kind == CPUSET:
        return f"{name}={cpu_ranges(value)}"
    if kind == BOOL:
        return f"{name}={'yes' if value else 'no'}"
    if kind == ADDRESSES:
        return f"{name}=" + " ".join(f"{_address_text(f, a)}/{p}" for f, a, p in value)
    if kind in (DEVICE_LIMIT, DEVICE_WEIGHT):
        return f"{name}=" + " ".join(f"{path} {text(n)}" for path, n in value)
    return f"{name}={text(value)}"


def _address_text(family: int, packed: bytes) -> str:
    import socket

    return socket.inet_ntop(socket.AF_INET if family == AF_INET else socket.AF_INET6, bytes(packed))
