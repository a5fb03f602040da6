"""What the user asked a container to be, before any image is looked at: RunOptions, built from
one table (OPTIONS) that ties each option's field, its `run`/`create` flags, its key in a declared
container's YAML file and its parser, so the flags and the keys cannot drift (mkosi's SETTINGS).

    Option("memory", ("-m", "--memory"), "memory", parse_memory, "memory limit, e.g. 256m")

The command line (sdctr.cli.parser) makes its flags from the table; run_options() makes the record
from argparse's values or from a YAML mapping. Every parser takes the field's name as the user
spelled it (`--memory` on the command line, `memory` in a file) and one value, and its error names
that field with an example of a good value: one line and exit status 125, before anything is
pulled or created. What the image adds is resolved later (sdctr.runtime.resolve) into the
ContainerSpec that create records.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from sdctr.log import SdctrError
from sdctr.record import Record
from sdctr.spec import DEFAULT_PIDS_LIMIT, Device, Mount, NetworkMode, Port, Resources, RestartPolicy

# typing.TYPE_CHECKING without importing typing: `sdctr run` imports this module, and typing is
# ~3 ms of each start
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
PULL_POLICIES = ("missing", "always", "never")


class RunOptions(Record):
    """What `run`/`create` or a declared container asked for; None or empty: the image's, or
    the default. Field names are the table's `dest`s."""

    image: str  # the reference as typed
    command: tuple[str, ...] | None = None  # None: the image's Cmd
    entrypoint: tuple[str, ...] | None = None  # None: the image's; given, it drops the image's Cmd too
    name: str = ""  # "": one is picked when the record is saved
    detach: bool = False
    detach_keys: str = ""  # run -it's (sdctr.cli.terminal reads them); "": Docker's ^P^Q
    rm: bool = False
    cpu_shares: int | None = None
    memory: int | None = None
    cpus: float | None = None
    pids_limit: int = DEFAULT_PIDS_LIMIT
    memory_swap: int | None = None  # bytes, memory and swap together (Docker's); -1: no limit
    cpuset_cpus: str = ""
    blkio_weight: int | None = None
    ulimits: tuple[str, ...] = ()  # "nofile=SOFT:HARD"
    properties: tuple[str, ...] = ()  # "KEY=VALUE", systemd resource properties (sdctr.unitprops)
    env_files: tuple[str, ...] = ()  # read by the caller, in its own context (user_env)
    env: tuple[str, ...] = ()  # "KEY=VALUE", or "KEY": the caller's value
    workdir: str = ""
    user: str = ""
    hostname: str = ""
    volumes: tuple[Mount, ...] = ()
    mounts: tuple[Mount, ...] = ()  # --mount
    tmpfs: tuple[Mount, ...] = ()  # --tmpfs
    read_only: bool = False
    cap_add: tuple[str, ...] = ()  # "CAP_NET_ADMIN" or "ALL"
    cap_drop: tuple[str, ...] = ()
    restart: RestartPolicy = RestartPolicy.NO
    restart_retries: int = 0  # on-failure:N's N (Docker's MaximumRetryCount); 0: no limit
    network: NetworkMode = NetworkMode.BRIDGE  # as Docker and Podman; none and host stay
    network_name: str = ""  # --network NAME: a user network (network is then BRIDGE)
    publish: tuple[Port, ...] = ()
    publish_all: bool = False  # -P: the image's ExposedPorts on free host ports
    ip: str = ""
    add_hosts: tuple[str, ...] = ()  # --add-host "NAME:ADDRESS" ("host-gateway": the bridge's gateway)
    dns: tuple[str, ...] = ()  # --dns: the resolv.conf's name servers instead of the host's
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    mac_address: str = ""  # "": Docker's 02:42 and the address's four bytes
    network_aliases: tuple[str, ...] = ()  # --network-alias: more names on a user network
    interactive: bool = False
    tty: bool = False
    ephemeral: bool = False
    labels: tuple[str, ...] = ()  # "KEY=VALUE"; "KEY" alone: an empty value
    pull: str = "missing"  # one of PULL_POLICIES
    platform: str | None = None  # what to pull: "os/arch[/variant]", None: this host's
    devices: tuple[Device, ...] = ()  # --device, not stat'ed yet (resolve does, at create)
    privileged: bool = False
    # Docker's health check: the command's argv ((): none, --no-healthcheck), seconds, retries;
    # 0 or None: Docker's defaults (HEALTH_DEFAULTS)
    health_cmd: tuple[str, ...] | None = None
    health_interval: float = 0
    health_timeout: float = 0
    health_start_period: float = 0
    health_retries: int = 0
    health_on_failure: str = "none"  # podman's: what an unhealthy container gets (HEALTH_ACTIONS)
    sdnotify: str = "conmon"  # podman's: who says READY=1 (SDNOTIFY_MODES)
    # a declared container's alone (its YAML file's keys; no flags)
    depends_on: tuple[str, ...] = ()  # other declared containers, started first (Requires=, After=)
    unit_settings: tuple[tuple[str, str], ...] = ()  # extra [Unit] lines, (key, value), in order
    service_settings: tuple[tuple[str, str], ...] = ()  # extra [Service] lines

    @property
    def resources(self) -> Resources:
        """The limits, as the record keeps them: the fields of the same names."""
        return Resources(**{f: getattr(self, f) for f in Resources._fields})


# --- parsers: (the field as the user spelled it, one value) -> the field's value ---------------

def parse_size(field: str, value: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)b?\s*", value.lower())
    if not m:
        raise SdctrError(f"{field} {value!r} is not a size", hint="examples: 512m, 2g, 1048576")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def parse_memory(field: str, value: str) -> int:
    size = parse_size(field, value)
    if size < 6 * 1024 * 1024:  # Docker's minimum: less cannot even start a shell
        raise SdctrError(f"{field} {value!r} is below the minimum of 6m")
    return size


def parse_cpu_shares(field: str, value: str) -> int:
    if not value.isdigit():
        raise SdctrError(f"{field} {value!r} is not a whole number", hint="the default weight is 1024")
    shares = int(value)
    if not 2 <= shares <= 262144:
        raise SdctrError(f"{field} {shares} is outside 2..262144")
    return shares


def parse_cpus(field: str, value: str) -> float:
    try:
        cpus = float(value)
    except ValueError:
        raise SdctrError(f"{field} {value!r} is not a number", hint="examples: 0.5, 2") from None
    if not 0.01 <= cpus <= 1024:
        raise SdctrError(f"{field} {value!r} is outside 0.01..1024")
    return cpus


def parse_pids_limit(field: str, value: str) -> int:
    try:
        limit = int(value)
    except ValueError:
        raise SdctrError(f"{field} {value!r} is not a whole number") from None
    if limit == 0 or limit < -1:
        raise SdctrError(f"{field} {limit}: use a positive number, or -1 for no limit")
    return limit


def parse_memory_swap(field: str, value: str) -> int:
    """Docker's --memory-swap: memory and swap together (at least --memory), or -1: no limit."""
    return -1 if value.strip() == "-1" else parse_size(field, value)


def parse_cpuset_cpus(field: str, value: str) -> str:
    """0-3,5: CPU numbers and ranges, as the kernel's cpuset.cpus lists them."""
    from sdctr import unitprops

    try:
        cpus = unitprops.cpu_list(value)
    except ValueError as e:
        raise SdctrError(f"{field} {value!r}: {e}", hint="examples: 0-1, 0,2") from None
    if not cpus:
        raise SdctrError(f"{field} is empty", hint="examples: 0-1, 0,2")
    return unitprops.cpu_ranges(unitprops.cpu_mask(cpus))


def parse_blkio_weight(field: str, value: str) -> int:
    if not value.isdigit() or not 10 <= int(value) <= 1000:
        raise SdctrError(f"{field} {value!r} is not a weight in 10..1000", hint="the default weight is 500")
    return int(value)


# Docker's --ulimit names (the kernel's RLIMIT_*, lower case)
ULIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
           "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")


MIN_NOFILE = 16


def parse_ulimit(field: str, value: str) -> str:
    """NAME=SOFT[:HARD], as Docker's (-1 or unlimited: none; HARD defaults to SOFT): recorded as
    "name=SOFT:HARD", which properties() passes on as systemd's LimitNAME=SOFT:HARD."""
    from sdctr import unitprops

    name, eq, limits = value.partition("=")
    if not eq or name.lower() not in ULIMITS:
        raise SdctrError(f"{field} {value!r} is not NAME=SOFT[:HARD]" if not eq else
                         f"{field} {value!r}: {name!r} is not a limit's name",
                         hint=f"example: --ulimit nofile=1024:4096; the names: {', '.join(ULIMITS)}")
    try:
        [(_, _, hard), (_, _, soft)] = unitprops.parse(field, f"Limit{name.upper()}={limits}")
    except SdctrError as e:
        raise SdctrError(f"{field} {value!r}: {str(e).rpartition(': ')[2]}",
                         hint="SOFT[:HARD], numbers, or -1 for no limit") from None

    if name.lower() == "nofile" and soft < MIN_NOFILE:
        # systemd sets it on every process of the unit, sdctr's own hooks and init included (seen:
        # nofile=8 fails the start), where Docker's runc sets it on the container's process alone
        raise SdctrError(f"{field} {value!r}: below {MIN_NOFILE}, sdctr's own start of the container "
                         "fails", hint=f"--ulimit nofile={MIN_NOFILE}")

    def text(n: int) -> str:
        return "infinity" if n == unitprops.INFINITY else str(n)
    return f"{name.lower()}={text(soft)}:{text(hard)}"


def parse_property(field: str, value: str) -> str:
    """KEY=VALUE, a systemd resource property of the unit (sdctr.unitprops: which, and how each
    is sent); its form is checked here, its meaning by systemd when the unit is made."""
    from sdctr import unitprops

    return unitprops.normalize(field, value)


# (uid_t)-1 is setresuid's "leave unchanged": as a user id it would run the command as root
MAX_ID = 2**32 - 2


def parse_user(field: str, value: str) -> str:
    """USER[:GROUP], names or numeric ids; a number must be an id the kernel takes."""
    parts = value.split(":")
    if len(parts) > 2 or not all(parts):
        raise SdctrError(f"{field} {value!r} is not USER[:GROUP]", hint="examples: 1000, 1000:1000, nobody")
    for part in parts:
        if part.isdigit() and int(part) > MAX_ID:
            raise SdctrError(f"{field} {value!r}: {part} is not a user or group id (0..{MAX_ID})")
    return value


def parse_restart(field: str, value: str) -> tuple[RestartPolicy, int]:
    """POLICY, or on-failure:N (at most N restarts, as Docker's MaximumRetryCount; 0: no limit):
    the policy and N. run_options() puts N in its own field, restart_retries."""
    name, colon, count = value.partition(":")
    try:
        policy = RestartPolicy(name)
    except ValueError:
        choices = ", ".join(p.value for p in RestartPolicy)
        raise SdctrError(f"{field} {value!r} is not a restart policy", hint=f"one of {choices}") from None
    if not colon:
        return policy, 0
    if policy is not RestartPolicy.ON_FAILURE:
        raise SdctrError(f"{field} {value!r}: a maximum retry count is for on-failure only",
                         hint=f"{field} on-failure:3")
    if not count.isdigit():
        raise SdctrError(f"{field} {value!r}: the maximum retry count {count!r} is not a whole number",
                         hint=f"{field} on-failure:3")
    return policy, int(count)


def parse_network(field: str, value: str) -> tuple[NetworkMode, str]:
    """bridge, host, none, container:NAME (the container is found when this one is created), or
    a user network's name (on a bridge of its own: whether it exists is checked when the
    container is created)."""
    if value.startswith("container:"):
        if not value[len("container:"):]:
            raise SdctrError(f"{field} {value!r} names no container", hint=f"{field} container:web")
        return NetworkMode.CONTAINER, value[len("container:"):]
    try:
        return NetworkMode(value), ""
    except ValueError:
        if not NAME_RE.fullmatch(value):
            raise SdctrError(f"{field} {value!r}: no such network",
                             hint="the networks are: bridge, host, none, and `sdctr network ls`'s") from None
        return NetworkMode.BRIDGE, value


_PUBLISH = re.compile(r"(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d+):(\d+)(?:/(tcp|udp))?")


def parse_publish(field: str, value: str) -> Port:
    """[IP:]HOSTPORT:CONTAINERPORT[/tcp|udp]"""
    m = _PUBLISH.fullmatch(value)
    if not m:
        raise SdctrError(f"{field} {value!r} is not [IP:]HOSTPORT:CONTAINERPORT[/tcp|udp]",
                         hint="example: -p 8080:80, -p 127.0.0.1:5353:53/udp")
    host_ip, host_port, container_port, proto = m.groups()
    if host_ip:
        parse_ip(field, host_ip)
    for port in (host_port, container_port):
        if not 1 <= int(port) <= 65535:
            raise SdctrError(f"{field} {value!r}: port {port} is outside 1..65535")
    return Port(int(host_port), int(container_port), proto or "tcp", host_ip or "")


_PUBLISH_FORMS = re.compile(r"(?:(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d+(?:-\d+)?)?:)?"
                            r"(\d+(?:-\d+)?)(?:/(tcp|udp))?")


def parse_publish_forms(field: str, value: str) -> tuple[Port, ...]:
    """Docker's -p forms: [IP:]HOSTPORT:CONTAINERPORT[/PROTO], ranges of one length on both sides
    (8000-8010:80-90), and CONTAINERPORT or [IP]::CONTAINERPORT (a free host port, picked when the
    container is created: host port 0 until then)."""
    m = _PUBLISH_FORMS.fullmatch(value)
    if not m or ("-" not in value and ":" in value and m.group(2) is not None):
        return (parse_publish(field, value),)
    host_ip, host, container, proto = m.groups()
    if host_ip:
        parse_ip(field, host_ip)

    def span(text: str) -> range:
        first, _, last = text.partition("-")
        low, high = int(first), int(last or first)
        for port in (low, high):
            if not 1 <= port <= 65535:
                raise SdctrError(f"{field} {value!r}: port {port} is outside 1..65535")
        if high < low:
            raise SdctrError(f"{field} {value!r}: the range {text} ends before it starts")
        return range(low, high + 1)
    inside = span(container)
    outside = span(host) if host else None
    if outside is not None and len(outside) != len(inside):
        raise SdctrError(f"{field} {value!r}: the host range and the container range differ in length",
                         hint="example: -p 8000-8010:80-90")
    return tuple(Port(outside[i] if outside is not None else 0, c, proto or "tcp", host_ip or "")
                 for i, c in enumerate(inside))


def parse_ip(field: str, value: str) -> str:
    parts = value.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise SdctrError(f"{field} {value!r} is not an IPv4 address", hint="example: 10.89.0.10")
    return ".".join(str(int(p)) for p in parts)


def _is_ip(text: str) -> bool:
    import socket

    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
            return True
        except OSError:
            pass
    return False


def parse_add_host(field: str, value: str) -> str:
    """NAME:ADDRESS (or NAME=ADDRESS, as Docker 25 allows), an IPv6 address keeping its colons;
    host-gateway, Docker's word for the host's address on the bridge, is resolved at start."""
    sep = "=" if "=" in value else ":"
    name, _, address = value.partition(sep)
    if not name or not address or any(c.isspace() for c in name):
        raise SdctrError(f"{field} {value!r} is not NAME:ADDRESS", hint="example: --add-host db:10.1.2.3")
    address = address.strip("[]")
    if address != "host-gateway" and not _is_ip(address):
        raise SdctrError(f"{field} {value!r}: {address!r} is not an IP address (or host-gateway)")
    return f"{name}:{address}"


def parse_dns(field: str, value: str) -> str:
    if not _is_ip(value):
        raise SdctrError(f"{field} {value!r} is not an IP address", hint="example: --dns 192.0.2.53")
    return value


LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
DOMAIN = re.compile(rf"{LABEL}(\.{LABEL})*\.?")


def parse_dns_search(field: str, value: str) -> str:
    if value != "." and (len(value) > 253 or not DOMAIN.fullmatch(value)):  # ".": no search list
        raise SdctrError(f"{field} {value!r} is not a domain name", hint="example: --dns-search example.com")
    return value


def parse_network_alias(field: str, value: str) -> str:
    if not DOMAIN.fullmatch(value) or len(value) > 253:
        raise SdctrError(f"{field} {value!r} is not a host name", hint="example: --network-alias db")
    return value


def parse_dns_option(field: str, value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise SdctrError(f"{field} {value!r} is not one resolver option",
                         hint="example: --dns-option ndots:2")
    return value


MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


def parse_mac_address(field: str, value: str) -> str:
    if not MAC.fullmatch(value):
        raise SdctrError(f"{field} {value!r} is not a MAC address", hint="example: 02:42:0a:59:00:10")
    if int(value[:2], 16) & 1:  # the kernel refuses it for an interface
        raise SdctrError(f"{field} {value!r} is a multicast address",
                         hint="the first byte must be even, e.g. 02:...")
    return value.lower()


VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")  # Docker's


def parse_mount(field: str, value: str) -> Mount:
    """-v SRC:DST[:OPTS]: SRC a host path (a bind) or a volume's name (made on first use); OPTS
    ro or rw, and z/Z (SELinux relabelling: accepted, nothing is labelled yet)."""
    parts = value.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise SdctrError(f"{field} {value!r} is not SRC:DST[:ro]", hint="example: /srv/data:/data:ro")
    source, target = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) == 3 else ["rw"]
    if not source.startswith("/") and not VOLUME_NAME.fullmatch(source):
        raise SdctrError(f"{field} {value!r}: the source must be an absolute host path or a volume name",
                         hint="a volume name: letters, digits, '_', '.', '-'; a letter or digit first")
    check_target(field, value, target)
    for mode in modes:
        if mode not in ("ro", "rw", "z", "Z"):
            raise SdctrError(f"{field} {value!r}: mode {mode!r} is not ro or rw")
    kind = "bind" if source.startswith("/") else "volume"
    return Mount(source, target, readonly="ro" in modes, kind=kind)


def check_target(field: str, value: str, target: str) -> None:
    if not target.startswith("/") or target == "/":
        raise SdctrError(f"{field} {value!r}: the destination must be an absolute path other than /")


def parse_tmpfs(field: str, value: str) -> Mount:
    """--tmpfs DST[:OPTS], OPTS as mount(8)'s tmpfs options (size=64m,mode=1777,noexec...)."""
    target, _, options = value.partition(":")
    check_target(field, value, target)
    check_tmpfs_options(field, value, options)
    return Mount("", target, kind="tmpfs", options=options)


TMPFS_FLAGS = ("ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime")
TMPFS_KEYS = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks")


def check_tmpfs_options(field: str, value: str, options: str) -> None:
    for opt in filter(None, options.split(",")):
        key = opt.partition("=")[0]
        if opt not in TMPFS_FLAGS and key not in TMPFS_KEYS:
            raise SdctrError(f"{field} {value!r}: unknown tmpfs option {opt!r}",
                             hint=f"the options: {', '.join(TMPFS_FLAGS + TMPFS_KEYS)}")


MOUNT_KEYS = ("type", "source", "src", "target", "destination", "dst", "readonly", "ro",
              "volume-nocopy", "tmpfs-size", "tmpfs-mode", "bind-propagation", "consistency")


def parse_mount_option(field: str, value: str) -> Mount:
    """--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,volume-nocopy]
    [,tmpfs-size=...][,tmpfs-mode=...]: Docker's syntax; an unknown key is an error."""
    fields: dict[str, str] = {}
    for item in value.split(","):
        key, eq, val = item.partition("=")
        key = key.strip().lower()
        if key not in MOUNT_KEYS:
            raise SdctrError(f"{field} {value!r}: unknown key {key!r}",
                             hint=f"the keys: {', '.join(MOUNT_KEYS)}")
        fields[key] = val if eq else "true"
    kind = fields.get("type", "volume")
    source = fields.get("source", fields.get("src", ""))
    target = fields.get("target", fields.get("destination", fields.get("dst", "")))
    readonly = _mount_bool(field, value, fields.get("readonly", fields.get("ro", "false")))
    check_target(field, value, target)
    if fields.get("bind-propagation", "rprivate") != "rprivate":
        raise SdctrError(f"{field} {value!r}: only bind-propagation=rprivate is supported")
    if kind == "bind":
        if not source.startswith("/"):
            raise SdctrError(f"{field} {value!r}: a bind's source must be an absolute host path")
        return Mount(source, target, readonly)
    if kind == "volume":
        if source and not VOLUME_NAME.fullmatch(source):
            raise SdctrError(f"{field} {value!r}: {source!r} is not a volume name")
        if not source:
            raise SdctrError(f"{field} {value!r}: a volume needs a source (its name)")
        nocopy = _mount_bool(field, value, fields.get("volume-nocopy", "false"))
        return Mount(source, target, readonly, kind="volume", options="nocopy" if nocopy else "")
    if kind == "tmpfs":
        if source:
            raise SdctrError(f"{field} {value!r}: a tmpfs has no source")
        opts = [*(("ro",) if readonly else ()),
                *((f"size={parse_size(field, fields['tmpfs-size'])}",) if "tmpfs-size" in fields else ()),
                *((f"mode={fields['tmpfs-mode']}",) if "tmpfs-mode" in fields else ())]
        return Mount("", target, readonly, kind="tmpfs", options=",".join(opts))
    raise SdctrError(f"{field} {value!r}: type {kind!r} is not bind, volume or tmpfs")


def _mount_bool(field: str, value: str, text: str) -> bool:
    if text.lower() in ("true", "1", ""):
        return True
    if text.lower() in ("false", "0"):
        return False
    raise SdctrError(f"{field} {value!r}: {text!r} is not true or false")


def parse_device(field: str, value: str) -> Device:
    """HOST[:CONTAINER][:PERMS], as Docker's --device: CONTAINER defaults to HOST, PERMS (the
    device cgroup's r, w, m) to rwm. Whether HOST is a device node is checked at create
    (sdctr.runtime.resolve), where a declared container's unit reads it."""
    parts = value.split(":")
    perms = "rwm"
    if len(parts) > 1 and parts[-1].isalpha():
        perms = parts.pop()
        if not perms or set(perms) - set("rwm") or len(set(perms)) != len(perms):
            raise SdctrError(f"{field} {value!r}: permissions {perms!r} are not some of r, w, m",
                             hint="example: --device /dev/loop3:/dev/loop3:rw")
    if len(parts) > 2 or not parts[0]:
        raise SdctrError(f"{field} {value!r} is not HOST[:CONTAINER][:PERMS]",
                         hint="example: --device /dev/loop3, --device /dev/sdb:/dev/xvdb:r")
    host, path = parts[0], parts[1] if len(parts) == 2 else parts[0]
    if not host.startswith("/"):
        raise SdctrError(f"{field} {value!r}: {host!r} is not an absolute host path")
    device = Device(host, path, "".join(c for c in "rwm" if c in perms))
    if len(parts) == 2:  # HOST's own path is checked after HOST, at create
        check_device_path(field, device)
    return device


def check_device_path(field: str, device: Device) -> None:
    """The node is made in the container's own /dev tmpfs, where no symlink is the image's."""
    import posixpath

    path = device.path
    if posixpath.normpath(path) != path or not path.startswith("/dev/") or path.startswith("/dev/pts/"):
        raise SdctrError(f"{field} {device.host_path}:{path}: the container's path must be a plain path "
                         "under /dev", hint=f"example: {field} {device.host_path}:/dev/xvdb")


def parse_env_entry(field: str, value: str) -> str:
    """KEY=VALUE, or KEY alone (the caller's value, looked up by user_env)."""
    key = value.partition("=")[0]
    if not key or not re.fullmatch(r"[^=\s]+", key):
        raise SdctrError(f"{field} {value!r} is not KEY=VALUE")
    return value


def parse_label(field: str, value: str) -> str:
    """KEY=VALUE, or KEY alone (an empty value, as Docker's)."""
    key, _, label = value.partition("=")
    if not key.strip():
        raise SdctrError(f"{field} {value!r} is not KEY=VALUE", hint="example: -l tier=web")
    return f"{key}={label}"


def parse_capability(field: str, value: str) -> str:
    """A capability as capabilities(7) names it, with or without CAP_, any case; or ALL."""
    from sdctr.caps import ALL_CAPS

    name = value.upper()
    name = name if name.startswith("CAP_") or name == "ALL" else f"CAP_{name}"
    if name != "ALL" and name not in ALL_CAPS:
        raise SdctrError(f"{field} {value!r}: unknown capability {name!r}",
                         hint="see capabilities(7), e.g. NET_ADMIN")
    return name


NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def parse_name(field: str, value: str) -> str:
    if not NAME_RE.fullmatch(value) or len(value) > 128:
        raise SdctrError(f"{field} {value!r} is not a valid container name",
                         hint="letters, digits, '_', '.', '-'; starting with a letter or digit")
    return value


def parse_pull(field: str, value: str) -> str:
    if value not in PULL_POLICIES:
        raise SdctrError(f"{field} {value!r} is not a pull policy", hint=f"one of {', '.join(PULL_POLICIES)}")
    return value


def parse_env(values: Iterable[str], lookup: Mapping[str, str], field: str = "--env") -> list[str]:
    """-e KEY=VALUE, or -e KEY to pass the caller's value (skipped when the caller has none)."""
    out = []
    for v in values:
        key, eq, _ = parse_env_entry(field, v).partition("=")
        if eq:
            out.append(v)
        elif key in lookup:
            out.append(f"{key}={lookup[key]}")
    return out


def read_env_file(path: str, lookup: Mapping[str, str]) -> list[str]:
    try:
        with open(path) as f:
            lines = [ln.strip() for ln in f]
    except OSError as e:
        raise SdctrError(f"--env-file {path}: {e.strerror}") from None
    return parse_env((ln for ln in lines if ln and not ln.startswith("#")), lookup,
                     field=f"--env-file {path}:")


def user_env(options: RunOptions, lookup: Mapping[str, str]) -> tuple[str, ...]:
    """The user's layer of the container's environment: the env files' entries, then -e's, a KEY
    alone taking the caller's value. The caller reads it in its own context: the CLI before it
    pulls (a bad file stops there), a declared container's unit when it starts."""
    entries = [e for path in options.env_files for e in read_env_file(path, lookup)]
    return tuple(entries + parse_env(options.env, lookup))


# --- health checks, as Docker's (--health-*, Compose's `healthcheck:`) ---------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_DURATION_SECONDS = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(field: str, value: str) -> float:
    """A Go duration, as Docker takes them (30s, 1m30s, 500ms); a bare number is seconds."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise SdctrError(f"{field} {value!r} is not a duration",
                             hint="examples: 30s, 1m30s, 500ms") from None
        seconds = sum(float(n) * _DURATION_SECONDS[u] for n, u in parts)
    if seconds < 0.001 or seconds > 365 * 86400:
        raise SdctrError(f"{field} {value!r} must be at least 1ms")
    return seconds


def parse_retries(field: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise SdctrError(f"{field} {value!r} is not a positive whole number", hint="Docker's default is 3")
    return int(value)


HEALTH_ACTIONS = ("none", "kill", "restart", "stop")


def parse_health_action(field: str, value: str) -> str:
    if value not in HEALTH_ACTIONS:
        raise SdctrError(f"{field} {value!r} is not an action", hint=f"one of {', '.join(HEALTH_ACTIONS)}")
    return value


# podman's --sdnotify: conmon, ours (the init once the command runs, or the health check's helper
# after its first pass); container, the container's own READY=1 on the socket handed in; ignore,
# ours at once, whatever a health check says
SDNOTIFY_MODES = ("conmon", "container", "ignore")


def parse_sdnotify(field: str, value: str) -> str:
    if value not in SDNOTIFY_MODES:
        raise SdctrError(f"{field} {value!r} is not a mode", hint=f"one of {', '.join(SDNOTIFY_MODES)}")
    return value


def parse_health_cmd(field: str, value: str) -> tuple[str, ...]:
    """--health-cmd CMD: run by the container's /bin/sh, as Docker's CMD-SHELL."""
    if not value.strip():
        raise SdctrError(f"{field} is empty", hint="e.g. --health-cmd 'wget -q -O- localhost'")
    return ("/bin/sh", "-c", value)


def parse_healthcheck(field: str, value: Any) -> dict[str, Any]:
    """Compose's `healthcheck:` mapping: test (a string for the shell, or [CMD, ...],
    [CMD-SHELL, "..."], [NONE]), interval, timeout, start_period, retries, disable."""
    if not isinstance(value, Mapping):
        raise SdctrError(f"{field} takes a mapping, not {_type_name(value)}",
                         hint="example: healthcheck: {test: wget -q -O- localhost, interval: 10s}")
    keys = {"test": "health_cmd", "interval": "health_interval", "timeout": "health_timeout",
            "start_period": "health_start_period", "retries": "health_retries",
            "on_failure": "health_on_failure", "disable": ""}
    out: dict[str, Any] = {}
    for key, given in value.items():
        if key not in keys:
            raise SdctrError(f"{field}: unknown key {key!r}", hint=f"the keys are: {', '.join(keys)}")
        where = f"{field}.{key}"
        if key == "disable":
            if given is True:
                out["health_cmd"] = ()
            continue
        if key == "test":
            out["health_cmd"] = _health_test(where, given)
            continue
        if isinstance(given, bool) or not isinstance(given, (str, int, float)):
            raise SdctrError(f"{where} takes a string or a number, not {_type_name(given)}")
        parse = {"retries": parse_retries, "on_failure": parse_health_action}.get(key, parse_duration)
        out[keys[key]] = parse(where, str(given))
    return out


def _health_test(field: str, given: Any) -> tuple[str, ...]:
    if isinstance(given, str):
        return parse_health_cmd(field, given)
    if not isinstance(given, list) or not given or not all(isinstance(w, str) for w in given):
        raise SdctrError(f"{field} takes a string or a list of strings",
                         hint='e.g. [CMD, wget, -q, "localhost"]')
    kind, rest = given[0], tuple(given[1:])
    if kind == "NONE":
        return ()
    if kind == "CMD" and rest:
        return rest
    if kind == "CMD-SHELL" and len(rest) == 1:
        return parse_health_cmd(field, rest[0])
    raise SdctrError(f"{field} {given!r}: a list starts with CMD (then the argv), CMD-SHELL (then one "
                     "command) or NONE")


# A declared container's `unit:` and `service:` mappings add lines to its unit's [Unit] and
# [Service] sections, as quadlet's sections do; not the keys sdctr writes or must control (the
# container's hooks, init, limits, identity and device policy), nor ones that would replace
# its process's environment: each refused with the YAML key to use where there is one.
OWNED_SETTINGS = {
    "unit": {"Description": "", "SourcePath": "", "CollectMode": "rm"},
    "service": {"Type": "", "NotifyAccess": "", "ExecStart": "command", "ExecStartPre": "",
                "ExecStartPost": "", "ExecStop": "", "ExecStopPost": "", "ExecReload": "",
                "ExecCondition": "", "KillMode": "", "KillSignal": "", "TimeoutStopSec": "",
                "SuccessExitStatus": "", "Restart": "restart", "RestartSec": "restart",
                "StartLimitBurst": "restart", "StartLimitInterval": "restart",
                "StartLimitIntervalSec": "restart", "RestartSteps": "", "RestartMaxDelaySec": "",
                "SyslogIdentifier": "", "LogExtraFields": "", "LogRateLimitIntervalSec": "",
                "TasksMax": "pids_limit", "DevicePolicy": "devices", "DeviceAllow": "devices",
                "CPUShares": "cpu_shares", "CPUWeight": "cpu_shares", "CPUQuota": "cpus",
                "MemoryLimit": "memory", "MemoryMax": "memory", "Slice": "", "Delegate": "",
                "StandardInput": "", "StandardOutput": "", "StandardError": "", "PIDFile": "",
                "User": "user", "Group": "user", "DynamicUser": "user", "RootDirectory": "",
                "RootImage": "", "WorkingDirectory": "workdir", "Environment": "env",
                "EnvironmentFile": "env_files", "PAMName": ""},
}
_SETTING_KEY = re.compile(r"[A-Z][A-Za-z0-9]*")


def parse_settings(field: str, value: Any) -> tuple[tuple[str, str], ...]:
    """`service: {MemoryHigh: 200M, IPAddressDeny: [any]}`: (key, value) lines, a list a line
    each; checked for form here and for meaning by systemd, which says so in the journal."""
    section = {"unit": "[Unit]", "service": "[Service]"}[field]
    if not isinstance(value, Mapping):
        example = "Documentation: man:foo(1)" if field == "unit" else "MemoryHigh: 200M"
        raise SdctrError(f"{field} takes a mapping of {section} settings, not {_type_name(value)}",
                         hint=f"example: {field}: {{{example}}}")
    lines = []
    for key, given in value.items():
        if not isinstance(key, str) or not _SETTING_KEY.fullmatch(key):
            raise SdctrError(f"{field}: {key!r} is not a systemd setting's name", hint="e.g. MemoryHigh")
        if key in OWNED_SETTINGS[field]:
            instead = OWNED_SETTINGS[field][key]
            raise SdctrError(f"{field}: {key} is set by sdctr itself and cannot be given in {section}",
                             hint=f"use the key {instead}: instead" if instead else None)
        for each in given if isinstance(given, list) else [given]:
            item = ("yes" if each else "no") if isinstance(each, bool) else each
            if not isinstance(item, (str, int, float)) or "\n" in str(item):
                raise SdctrError(f"{field}: {key} takes a value or a list of values on one line each, "
                                 f"not {_type_name(item)}")
            lines.append((key, str(item)))
    return tuple(lines)


# --- the table ----------------------------------------------------------------------------------

VALUE, SWITCH, LIST, WORDS, SETTINGS, MAPPING = "value", "switch", "list", "words", "settings", "mapping"


class Option(Record):
    dest: str  # the RunOptions field, and argparse's dest
    flags: tuple[str, ...]  # ("-m", "--memory"); () for the positionals, IMAGE and COMMAND
    yaml_key: str  # the key in a declared container's YAML; "": the command line's alone
    parse: Callable[[str, str], Any] | None = None  # for each value; None: the string as given
    help: str | None = None
    metavar: str | None = None
    kind: str = VALUE  # VALUE; SWITCH (a flag without a value); LIST (-e A -e B); WORDS (an argv);
    # SETTINGS (a YAML mapping of systemd settings)
    choices: tuple[str, ...] = ()
    verb: str = ""  # the one verb that has this flag; "": run and create

    @property
    def flag(self) -> str:
        """How an error names the option on the command line: its long flag, or its metavar."""
        return next((f for f in self.flags if f.startswith("--")), self.metavar or self.dest)


OPTIONS = (
    Option("detach", ("-d", "--detach"), "", help="run in the background, print the id", kind=SWITCH,
           verb="run"),
    Option("rm", ("--rm",), "", help="remove the container when it stops", kind=SWITCH),
    Option("name", ("--name",), "", parse_name, "a name to use instead of the id"),  # YAML: the file's
    Option("cpu_shares", ("-c", "--cpu-shares"), "cpu_shares", parse_cpu_shares, metavar="SHARES",
           help="relative CPU weight (default 1024)"),
    Option("memory", ("-m", "--memory"), "memory", parse_memory, metavar="BYTES",
           help="memory limit, e.g. 256m"),
    Option("cpus", ("--cpus",), "cpus", parse_cpus, help="CPU quota in CPUs, e.g. 0.5"),
    Option("pids_limit", ("--pids-limit",), "pids_limit", parse_pids_limit, metavar="N",
           help=f"tasks limit (default {DEFAULT_PIDS_LIMIT}, -1: none)"),
    Option("memory_swap", ("--memory-swap",), "memory_swap", parse_memory_swap, metavar="BYTES",
           help="memory and swap together (with -m; -1: no swap limit)"),
    Option("cpuset_cpus", ("--cpuset-cpus",), "cpuset_cpus", parse_cpuset_cpus, metavar="CPUS",
           help="the CPUs to run on, e.g. 0-1 (AllowedCPUs on cgroup v2, CPUAffinity on v1)"),
    Option("blkio_weight", ("--blkio-weight",), "blkio_weight", parse_blkio_weight, metavar="WEIGHT",
           help="relative block I/O weight, 10..1000 (BlockIOWeight; IOWeight on cgroup v2)"),
    Option("ulimits", ("--ulimit",), "ulimits", parse_ulimit, kind=LIST, metavar="NAME=SOFT[:HARD]",
           help="a resource limit, e.g. nofile=1024:4096 (systemd's LimitNOFILE=)"),
    Option("properties", ("--property",), "properties", parse_property, kind=LIST, metavar="KEY=VALUE",
           help="a systemd resource property of the unit, e.g. MemoryHigh=200M, IPAddressDeny=any "
           "(checked by systemd; an unknown KEY lists the supported)"),
    Option("env", ("-e", "--env"), "env", parse_env_entry, "an environment variable (KEY alone: ours)",
           metavar="KEY=VALUE", kind=LIST),
    Option("env_files", ("--env-file",), "env_files", help="KEY=VALUE lines", metavar="FILE", kind=LIST),
    Option("workdir", ("-w", "--workdir"), "workdir", help="the command's directory (default: the image's)"),
    Option("user", ("-u", "--user"), "user", parse_user, help="name or id (default: the image's)",
           metavar="USER[:GROUP]"),
    Option("hostname", ("-h", "--hostname"), "hostname", help="default: the short id"),
    Option("volumes", ("-v", "--volume"), "volumes", parse_mount,
           "bind-mount a host directory, or a named volume (made on first use)",
           metavar="SRC:DST[:ro]", kind=LIST),
    Option("mounts", ("--mount",), "mounts", parse_mount_option, kind=LIST,
           metavar="type=bind|volume|tmpfs,source=...,target=...[,readonly]",
           help="a mount in Docker's --mount syntax"),
    Option("tmpfs", ("--tmpfs",), "tmpfs", parse_tmpfs, kind=LIST, metavar="DST[:OPTIONS]",
           help="a tmpfs at DST (options: size=64m,mode=1777,noexec,...)"),
    Option("read_only", ("--read-only",), "read_only", help="mount the root file system read-only",
           kind=SWITCH),
    Option("cap_add", ("--cap-add",), "cap_add", parse_capability, "a capability more (or ALL)",
           metavar="CAP", kind=LIST),
    Option("cap_drop", ("--cap-drop",), "cap_drop", parse_capability, "a capability less (or ALL)",
           metavar="CAP", kind=LIST),
    Option("restart", ("--restart",), "restart", parse_restart, metavar="POLICY",
           help="no, on-failure[:MAX-RETRIES], always, unless-stopped"),
    Option("network", ("--network",), "network", parse_network, metavar="NETWORK",
           help="bridge (the default: a veth on the bridge sdctr0), host, none, or a user network"),
    Option("publish", ("-p", "--publish"), "ports", parse_publish_forms, kind=LIST,
           metavar="[IP:][HOSTPORT]:PORT[/PROTO]",
           help="publish a container's port (or a range: 8000-8010:80-90) on the host (bridge)"),
    Option("publish_all", ("-P", "--publish-all"), "publish_all", kind=SWITCH,
           help="publish the image's exposed ports on free host ports (bridge)"),
    Option("ip", ("--ip",), "ip", parse_ip, metavar="ADDRESS", help="the container's address (bridge)"),
    Option("add_hosts", ("--add-host",), "add_hosts", parse_add_host, kind=LIST, metavar="NAME:ADDRESS",
           help="a line in the container's /etc/hosts (ADDRESS host-gateway: the bridge's gateway)"),
    Option("dns", ("--dns",), "dns", parse_dns, kind=LIST, metavar="ADDRESS",
           help="a name server instead of the host's"),
    Option("dns_search", ("--dns-search",), "dns_search", parse_dns_search, kind=LIST, metavar="DOMAIN",
           help="a search domain instead of the host's"),
    Option("dns_options", ("--dns-option",), "dns_options", parse_dns_option, kind=LIST, metavar="OPTION",
           help="a resolv.conf option instead of the host's, e.g. ndots:2"),
    Option("mac_address", ("--mac-address",), "mac_address", parse_mac_address, metavar="MAC",
           help="eth0's MAC address (bridge)"),
    Option("network_aliases", ("--network-alias",), "network_aliases", parse_network_alias, kind=LIST,
           metavar="NAME", help="another name for the container on its user network"),
    Option("entrypoint", ("--entrypoint",), "entrypoint", metavar="PROGRAM", kind=WORDS,
           help="the program instead of the image's ('': none)"),
    Option("interactive", ("-i", "--interactive"), "", help="keep stdin open", kind=SWITCH),
    Option("tty", ("-t", "--tty"), "", help="a terminal for the container", kind=SWITCH),
    Option("detach_keys", ("--detach-keys",), "", metavar="KEYS", verb="run",
           help="with -it, the keys that detach, leaving the container running (default: ctrl-p,ctrl-q)"),
    Option("ephemeral", ("--ephemeral",), "ephemeral", help="discard the writable layer at every stop",
           kind=SWITCH),
    Option("labels", ("-l", "--label"), "labels", parse_label, "a label for filters (ps --filter label=)",
           metavar="KEY=VALUE", kind=LIST),
    Option("pull", ("--pull",), "pull", parse_pull, choices=PULL_POLICIES,
           help="pull the image first: when missing (default), always, never"),
    Option("platform", ("--platform",), "platform", metavar="OS/ARCH[/VARIANT]",
           help="what to pull (default: this host)"),
    Option("devices", ("--device",), "devices", parse_device, "a host device in the container",
           metavar="HOST[:CONTAINER][:PERMS]", kind=LIST),
    Option("privileged", ("--privileged",), "privileged", kind=SWITCH,
           help="every capability and device, no seccomp or masked paths: the host's root"),
    Option("health_cmd", ("--health-cmd",), "", parse_health_cmd, metavar="COMMAND",
           help="a command run in the container (by /bin/sh) to check its health"),
    Option("health_interval", ("--health-interval",), "", parse_duration, metavar="DURATION",
           help="time between health checks (default 30s)"),
    Option("health_timeout", ("--health-timeout",), "", parse_duration, metavar="DURATION",
           help="a check running longer fails (default 30s)"),
    Option("health_start_period", ("--health-start-period",), "", parse_duration, metavar="DURATION",
           help="failures in this time after the start do not count (default 0s)"),
    Option("health_retries", ("--health-retries",), "", parse_retries, metavar="N",
           help="consecutive failures that make it unhealthy (default 3)"),
    Option("health_on_failure", ("--health-on-failure",), "", parse_health_action, metavar="ACTION",
           choices=HEALTH_ACTIONS, help="what an unhealthy container gets (podman's): none, kill, restart, "
           "stop"),
    Option("sdnotify", ("--sdnotify",), "sdnotify", parse_sdnotify, metavar="MODE", choices=SDNOTIFY_MODES,
           help="who tells systemd the container is ready (podman's): conmon (sdctr: at once, or "
           "after the first health check that passes), container (NOTIFY_SOCKET handed in), ignore"),
    Option("healthcheck", (), "healthcheck", kind=MAPPING, verb="declared",
           help="the health check as Compose writes it: test, interval, timeout, retries, start_period"),
    # a declared container's own keys (verb "declared": no command-line flag)
    Option("depends_on", (), "depends_on", parse_name, kind=LIST, verb="declared",
           help="declared containers that start first (Requires= and After= on their units)"),
    Option("unit_settings", (), "unit", kind=SETTINGS, verb="declared",
           help="more [Unit] settings of the generated unit (not those sdctr sets itself)"),
    Option("service_settings", (), "service", kind=SETTINGS, verb="declared",
           help="more [Service] settings of the generated unit (not those sdctr sets itself)"),
    Option("image", (), "image", metavar="IMAGE"),
    Option("command", (), "command", metavar="COMMAND", kind=WORDS),
)


# what `sdctr update` changes, on the record and on a running container's unit (sdctr.cli.update)
UPDATABLE = ("cpu_shares", "memory", "cpus", "pids_limit", "memory_swap", "cpuset_cpus", "blkio_weight",
             "properties")


def run_options(values: Mapping[str, Any], *, yaml: bool = False) -> RunOptions:
    """RunOptions from argparse's values (`vars(args)`: keyed by dest, None where a flag was not
    given, other keys ignored), or with `yaml` from a declared container's mapping (keyed by the
    table's keys: an unknown key, or a value of the wrong type, is an error naming the key; the
    caller adds the file and line). A declared container runs detached."""
    table = {o.yaml_key: o for o in OPTIONS if o.yaml_key} if yaml else {o.dest: o for o in OPTIONS}
    if yaml:
        unknown = sorted(str(k) for k in values if k not in table)
        if unknown:
            e = SdctrError(f"unknown key {unknown[0]!r}", hint=f"the keys are: {', '.join(sorted(table))}")
            e.key = unknown[0]  # type: ignore[attr-defined]
            raise e
    fields: dict[str, Any] = {"detach": True} if yaml else {}
    for name, option in table.items():
        value = values.get(name)
        if value is None or (not yaml and ((value == "" and option.kind == VALUE) or value == [])):
            continue  # not given; as Docker, `--name ''` is no name, and COMMAND is [] untyped
        try:
            fields[option.dest] = _convert(option, name if yaml else option.flag, value, yaml)
        except SdctrError as e:
            e.key = name  # type: ignore[attr-defined]  # read_declared finds its line
            raise
    if "restart" in fields:  # one flag, two fields: the policy, and on-failure:N's N
        fields["restart"], fields["restart_retries"] = fields["restart"]
    if "network" in fields:  # one flag, two fields: the mode, and a user network's name
        fields["network"], fields["network_name"] = fields["network"]
    fields.update(fields.pop("healthcheck", {}))  # one key, the health_* fields
    if "image" not in fields:
        raise SdctrError("no image given", hint="say which: image: busybox" if yaml else None)
    options = RunOptions(**fields)
    for check in CHECKS:
        check(options)
    return options


# --- declared containers: /etc/sdctr/containers/NAME.yaml --------------------------------------

def declared_dir() -> str:
    """Where declared containers live: `containers/` beside the configuration (SDCTR_CONFIG moves
    both), or SDCTR_CONTAINERS_DIR."""
    import os

    from sdctr.config import config_path

    return os.environ.get("SDCTR_CONTAINERS_DIR") or os.path.join(config_path().parent, "containers")


def read_declared(path: str) -> RunOptions:
    """A declared container's options from its YAML file, named by the file (web.yaml: web) and
    checked by the same table as the flags. Every error names the file, and the line and key
    where there is one: `web.yaml:3: memory '10xb' is not a size`."""
    import os

    import yaml

    base = os.path.basename(path)
    name = parse_name(f"the file name {base!r}:", base[:-5] if base.endswith(".yaml") else base)
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise SdctrError(f"{path}: {e.strerror}") from None
    # the C parser where PyYAML has it (a tenth of the pure one's time: the generator reads
    # every file at each boot); composed first, so that each key keeps its line
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        doc = _construct(loader, node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise SdctrError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    finally:
        loader.dispose()
    if not isinstance(doc, dict):
        raise SdctrError(f"{path}: a declared container is a mapping of keys, not {_type_name(doc)}",
                         hint="example: image: busybox")
    lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}  # type: ignore[union-attr]
    try:
        return run_options(doc, yaml=True).replace(name=name)
    except SdctrError as e:
        key = getattr(e, "key", None)
        where = f"{path}:{lines[key]}" if key in lines else path
        raise SdctrError(f"{where}: {e}", e.hint) from None


_YAML = "tag:yaml.org,2002:"
_SCALARS = {f"{_YAML}{t}": f"construct_yaml_{t}" for t in ("int", "float", "bool", "null")}
_PLAIN_KEYS = frozenset((f"{_YAML}str", *_SCALARS))  # a merge key (<<) is not one


class _NotPlain(Exception):
    pass


def _construct(loader: Any, node: Any) -> Any:
    """The document, as PyYAML's safe constructor makes it: for the plain mappings, lists and
    scalars a declared file holds, without its generic machinery (a third of the parse, at every
    boot); anything else (merge keys, timestamps, a recursive alias) by PyYAML's constructor."""
    def plain(node: Any, depth: int) -> Any:
        tag = node.tag
        if tag == f"{_YAML}str":
            return node.value
        if tag in _SCALARS:
            return getattr(loader, _SCALARS[tag])(node)
        if depth > 20:
            raise _NotPlain
        if tag == f"{_YAML}map":
            out = {}
            for key, value in node.value:
                if key.tag not in _PLAIN_KEYS:
                    raise _NotPlain
                out[plain(key, depth)] = plain(value, depth + 1)
            return out
        if tag == f"{_YAML}seq":
            return [plain(item, depth + 1) for item in node.value]
        raise _NotPlain

    try:
        return plain(node, 0)
    except _NotPlain:
        return loader.construct_document(node)


def _convert(option: Option, field: str, value: Any, yaml: bool) -> Any:  # noqa: PLR0911 - one per kind
    """One option's value, checked for its kind (a YAML file can hold any type) and parsed."""
    def one(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            hint = (f'YAML reads yes/no/on/off as true/false: quote the value, e.g. {field}: "no"'
                    if isinstance(v, bool) else None)
            raise SdctrError(f"{field} takes a string or a number, not {_type_name(v)}", hint=hint)
        return option.parse(field, str(v)) if option.parse else str(v)

    if option.kind == SWITCH:
        if not isinstance(value, bool):
            raise SdctrError(f"{field} takes true or false, not {_type_name(value)}")
        return value
    if option.kind == VALUE:
        return one(value)
    if option.kind == SETTINGS:
        return parse_settings(field, value)
    if option.kind == MAPPING:
        return parse_healthcheck(field, value)
    if isinstance(value, str):
        if option.kind == WORDS:
            # an --entrypoint is one word, as Docker's ('' clears the image's); a YAML string is
            # split as a shell would, as Compose does
            if not yaml:
                return (value,) if value else ()
            import shlex

            return tuple(shlex.split(value))
        item = one(value)  # a YAML list of one may be written as its item
        return item if isinstance(item, tuple) else (item,)
    if option.dest in ("env", "labels") and isinstance(value, Mapping):  # {KEY: value}, as Compose allows
        value = [str(k) if v is None else f"{k}={_scalar_text(v)}" for k, v in value.items()]
    if option.dest == "properties" and isinstance(value, Mapping):  # {MemoryHigh: 200M, IPAddressDeny: [..]}
        value = [f"{k}={_scalar_text(v)}" for k, given in value.items()
                 for v in (given if isinstance(given, list) else [given])]
    if option.dest == "ulimits" and isinstance(value, Mapping):  # Compose's {nofile: {soft: 1, hard: 2}}
        value = [f"{k}={_scalar_text(v.get('soft', v.get('hard')))}"
                 + (f":{_scalar_text(v['hard'])}" if "hard" in v else "")
                 if isinstance(v, Mapping) else f"{k}={_scalar_text(v)}" for k, v in value.items()]
    if not isinstance(value, (list, tuple)):
        raise SdctrError(f"{field} takes a list, not {_type_name(value)}")
    items = [one(v) for v in value]
    # a parser may give several items for one value (-p 8000-8010:80-90)
    return tuple(i for item in items for i in (item if isinstance(item, tuple) else (item,)))


def _scalar_text(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _type_name(v: Any) -> str:
    return {bool: "true/false", dict: "a mapping", list: "a list", type(None): "null", str: "a string",
            int: "a number", float: "a number"}.get(type(v), type(v).__name__)


# --- checks of the whole record: small and named, each naming the fields it rejects -------------

def rm_never_restarts(options: RunOptions) -> None:
    if options.rm and options.restart is not RestartPolicy.NO:
        raise SdctrError("--rm and --restart cannot be combined: a restarting container is never removed")


def memory_swap_needs_memory(options: RunOptions) -> None:
    """As Docker: swap is counted with memory, so it needs the memory limit, and not less."""
    swap = options.memory_swap
    if swap is not None and swap != -1:
        if options.memory is None:
            raise SdctrError("--memory-swap needs --memory: it is the limit of memory and swap together",
                             hint="e.g. -m 256m --memory-swap 512m")
        if swap < options.memory:
            raise SdctrError(f"--memory-swap {swap} is below --memory {options.memory}: it counts "
                             "memory and swap together", hint="-m 256m --memory-swap 512m: 256m of swap")


def ports_and_ip_need_bridge(options: RunOptions) -> None:
    if options.network is NetworkMode.BRIDGE:
        return
    for given, flag in ((options.publish, "--publish"), (options.ip, "--ip"),
                        (options.publish_all, "--publish-all"), (options.mac_address, "--mac-address")):
        if given:
            shown = f"container:{options.network_name}" if options.network is NetworkMode.CONTAINER \
                else options.network.value
            raise SdctrError(f"{flag} needs a bridge network, not --network {shown}",
                             hint="add --network bridge")


def ports_unique(options: RunOptions) -> None:
    seen: set[tuple[str, int, str]] = set()
    for port in options.publish:
        if not port.host_port:  # a free one, picked at create
            continue
        key = (port.host_ip, port.host_port, port.proto)
        if key in seen or (port.host_ip and ("", port.host_port, port.proto) in seen):
            raise SdctrError(f"--publish {port.text}: host port {port.host_port}/{port.proto} is "
                             "published twice")
        seen.add(key)
    if any(("", p.host_port, p.proto) in seen for p in options.publish if p.host_ip and p.host_port):
        raise SdctrError("--publish: a host port is published on every address and on one of them")


def container_network_takes_its_names(options: RunOptions) -> None:
    """--network container:NAME shares NAME's hostname, hosts and resolv.conf (as Docker): the
    flags that would set them are refused, as Docker's "conflicting options"."""
    if options.network is not NetworkMode.CONTAINER:
        return
    for given, flag in ((options.hostname, "--hostname"), (options.dns, "--dns"),
                        (options.dns_search, "--dns-search"), (options.dns_options, "--dns-option"),
                        (options.add_hosts, "--add-host")):
        if given:
            raise SdctrError(f"{flag} cannot be combined with --network container:{options.network_name}: "
                             "the container takes that one's", hint=f"give {flag} to that container")


def aliases_need_a_user_network(options: RunOptions) -> None:
    if options.network_aliases and (not options.network_name or options.network is not NetworkMode.BRIDGE):
        # as Docker: the default bridge has none
        raise SdctrError(f"--network-alias needs a user network, not --network {options.network.value}",
                         hint="sdctr network create NAME, then --network NAME")


CHECKS = (rm_never_restarts, memory_swap_needs_memory, ports_and_ip_need_bridge, ports_unique,
          container_network_takes_its_names,
          aliases_need_a_user_network)
