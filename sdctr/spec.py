"""A container as it is recorded and run, as frozen data: ContainerSpec and its parts.

What the user asked for (flags, YAML keys) and their parsers are sdctr.options' RunOptions;
sdctr.runtime.resolve turns options and an image into a ContainerSpec at create time.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from sdctr.record import Record

# typing.TYPE_CHECKING without importing typing: the init and the hooks import this module,
# and typing is ~3 ms of each start of theirs
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Docker's default capability set (moby oci/caps/defaults.go).
DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)
DEFAULT_PIDS_LIMIT = 4096
DEFAULT_STOP_TIMEOUT = 10


class RestartPolicy(enum.Enum):
    NO = "no"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"
    UNLESS_STOPPED = "unless-stopped"

    def systemd_restart(self) -> str:
        """The unit's Restart= value. unless-stopped is always: `sdctr stop` stops the unit, and
        systemd does not restart a unit that was stopped on purpose."""
        return {"no": "no", "on-failure": "on-failure"}.get(self.value, "always")

    def starts_at_boot(self, stopped_by_user: bool) -> bool:
        """Whether `sdctr system autostart` (sdctr-restart.service) brings it back after a
        reboot, as Docker's daemon does at its start: always, always; the others unless stopped
        by hand (`sdctr stop`) since they last ran."""
        return self is RestartPolicy.ALWAYS or (self is not RestartPolicy.NO and not stopped_by_user)

    def restarts_on(self, exit_status: int) -> bool:
        return self is not RestartPolicy.NO and (self is not RestartPolicy.ON_FAILURE or exit_status != 0)


class NetworkMode(enum.Enum):
    NONE = "none"
    HOST = "host"
    BRIDGE = "bridge"  # the default network: a veth pair on the bridge sdctr0 (sdctr.net)
    CONTAINER = "container"  # --network container:NAME: another running container's namespace


class Port(Record):
    """A published port: -p [IP:]HOSTPORT:CONTAINERPORT[/PROTO]."""

    host_port: int
    container_port: int
    proto: str = "tcp"  # tcp or udp
    host_ip: str = ""  # "": every address of the host

    @property
    def text(self) -> str:
        host = f"{self.host_ip}:" if self.host_ip else ""
        return f"{host}{self.host_port}:{self.container_port}/{self.proto}"


class Resources(Record):
    cpu_shares: int | None = None  # -c: relative weight, 2..262144 (cgroup v1 cpu.shares)
    memory: int | None = None  # -m: bytes
    cpus: float | None = None  # --cpus: CPU quota in CPUs
    pids_limit: int = DEFAULT_PIDS_LIMIT
    memory_swap: int | None = None  # --memory-swap: memory and swap together, bytes; -1: no limit
    cpuset_cpus: str = ""  # --cpuset-cpus: "0-1,3"
    blkio_weight: int | None = None  # --blkio-weight: 10..1000
    ulimits: tuple[str, ...] = ()  # --ulimit "nofile=SOFT:HARD" (numbers or infinity), in order
    properties: tuple[str, ...] = ()  # --property "KEY=VALUE" (sdctr.unitprops), in order


class Mount(Record):
    source: str  # bind: a host path; volume: the volume's name; tmpfs: ""
    target: str
    readonly: bool = False
    kind: str = "bind"  # bind, volume, tmpfs (Docker's --mount type=)
    options: str = ""  # tmpfs: its mount options (size=64m,mode=1777); volume: "nocopy" or ""


class Device(Record):
    """A host device node made in the container (--device HOST[:CONTAINER][:PERMS]): the kind,
    numbers and mode are the host node's, read at create (sdctr.runtime.resolve.stat_device);
    the parser leaves them empty."""

    host_path: str
    path: str  # in the container, under /dev
    perms: str = "rwm"  # the device cgroup's access: some of r, w, m
    kind: str = ""  # "c" or "b"; "": not stat'ed yet
    major: int = 0
    minor: int = 0
    mode: int = 0o660  # the host node's permission bits, as Docker copies them
    uid: int = 0
    gid: int = 0


class ContainerSpec(Record):
    id: str  # 64 hex; the unit is ctr-<id[:12]>
    name: str
    image: str  # the reference the user typed, as resolved ("busybox:latest")
    image_id: str  # sha256 of the image config
    command: tuple[str, ...]  # the argv to run: entrypoint + cmd, already merged
    env: tuple[str, ...] = ()  # "KEY=value", image's first, then --env-file, then -e
    workdir: str = "/"
    user: str = ""  # "" (root), "uid[:gid]" or "name[:group]", resolved inside the rootfs
    hostname: str = ""
    mounts: tuple[Mount, ...] = ()
    read_only: bool = False
    capabilities: tuple[str, ...] = DEFAULT_CAPS
    resources: Resources = Resources()
    restart: RestartPolicy = RestartPolicy.NO
    restart_retries: int = 0  # on-failure:N's N (Docker's MaximumRetryCount); 0: no limit
    network: NetworkMode = NetworkMode.NONE
    network_name: str = ""  # a user network's name (network is BRIDGE); "": the default, bridge
    network_container: str = ""  # CONTAINER: the full id of the container whose namespace it joins
    ports: tuple[Port, ...] = ()  # -p, on a bridge network
    ip: str = ""  # --ip: the address asked for; "": the next free one
    add_hosts: tuple[str, ...] = ()  # --add-host "NAME:ADDRESS"; host-gateway resolved at start
    dns: tuple[str, ...] = ()  # --dns, --dns-search, --dns-option: resolv.conf's instead of the host's
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    mac_address: str = ""  # --mac-address; "": derived from the address (net.setup.mac_address)
    network_aliases: tuple[str, ...] = ()  # --network-alias: names the other members see
    interactive: bool = False
    tty: bool = False
    attached: bool = False  # no -d: the caller's terminal is the container's stdio
    remove: bool = False  # --rm: the record and snapshot go when the unit stops
    ephemeral: bool = False  # the snapshot is discarded at every stop, the record kept
    stop_timeout: int = DEFAULT_STOP_TIMEOUT
    labels: tuple[str, ...] = ()  # "KEY=VALUE", -l's, in order
    created: float = 0.0
    # the snapshot, as create made it: its driver ("" in records made before it was recorded:
    # their image is resolved once more) and the image's layer chain (diff ids, bottom first)
    storage: str = ""
    layers: tuple[str, ...] = ()
    # made from /etc/sdctr/containers/<name>.yaml by its generated unit ctr-<name>.service
    # (sdctr.systemd.generator), which outlives the record: started by name, never transient
    declared: bool = False
    devices: tuple[Device, ...] = ()  # --device, stat'ed at create
    # --privileged: every capability, no seccomp filter, no masked or read-only paths, /sys
    # writable, every device allowed and the host's /dev nodes made in the container's /dev
    privileged: bool = False
    # Docker's health check (sdctr.init.health): the argv run in the container, () for none
    health_cmd: tuple[str, ...] = ()
    health_interval: float = 30.0
    health_timeout: float = 30.0
    health_start_period: float = 0.0
    health_retries: int = 3
    health_on_failure: str = "none"  # none, kill, restart, stop: done by the check that finds it unhealthy
    # who says READY=1: conmon (the init, or the health check's helper), container (its own, on
    # the NOTIFY_SOCKET bound in at NOTIFY_SOCKET_IN), ignore (the init at once)
    sdnotify: str = "conmon"

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def unit(self) -> str:
        return f"ctr-{self.name}.service" if self.declared else f"ctr-{self.short_id}.service"

    @property
    def label_map(self) -> dict[str, str]:
        return dict(label.partition("=")[::2] for label in self.labels)

    @property
    def network_mode(self) -> str:
        """Docker's HostConfig.NetworkMode: "bridge", "host", "none", "container:<id>", a user
        network's name."""
        if self.network is NetworkMode.CONTAINER:
            return f"container:{self.network_container}"
        return self.network_name or self.network.value

    @property
    def hostname_or_id(self) -> str:
        """The container's hostname: -h's, else its short id (Docker's default)."""
        return self.hostname or self.short_id

    def custom_resolv_conf(self, text: str) -> str:
        """A resolv.conf with --dns, --dns-search and --dns-option in place of its own lines of
        each kind, as Docker writes them (--dns-search . : no search list at all)."""
        given = {"nameserver": self.dns, "search": self.dns_search, "domain": self.dns_search,
                 "options": self.dns_options}
        if not any(given.values()):
            return text
        kept = [ln for ln in text.splitlines() if not ln.split() or not given.get(ln.split()[0])]
        search = [d for d in self.dns_search if d != "."]
        return "".join(f"{ln}\n" for ln in kept) + "".join(f"nameserver {s}\n" for s in self.dns) + \
            (f"search {' '.join(search)}\n" if search else "") + \
            (f"options {' '.join(self.dns_options)}\n" if self.dns_options else "")

    def to_json(self) -> dict[str, Any]:
        d = self.as_dict()
        d["restart"] = self.restart.value
        d["network"] = self.network.value
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ContainerSpec:
        fields = set(cls._fields)
        d = {k: v for k, v in d.items() if k in fields}
        return cls(**{
            **d,
            "command": tuple(d["command"]),
            "env": tuple(d.get("env", ())),
            "layers": tuple(d.get("layers", ())),
            "labels": tuple(d.get("labels", ())),
            "health_cmd": tuple(d.get("health_cmd", ())),
            **{k: tuple(d.get(k, ())) for k in ("add_hosts", "dns", "dns_search", "dns_options",
                                                   "network_aliases")},
            "mounts": tuple(Mount(**m) for m in d.get("mounts", ())),
            "devices": tuple(Device(**x) for x in d.get("devices", ())),
            "ports": tuple(Port(**p) for p in d.get("ports", ())),
            "capabilities": tuple(d.get("capabilities", DEFAULT_CAPS)),
            "resources": Resources(**{k: tuple(v) if isinstance(v, list) else v  # type: ignore[arg-type]
                                       for k, v in d.get("resources", {}).items()}),
            "restart": RestartPolicy(d.get("restart", "no")),
            "network": NetworkMode(d.get("network", "none")),
        })


# --- the environment, as the init and exec build it ------------------------------------------

def merge_env(*layers: Iterable[str]) -> tuple[str, ...]:
    """Later layers win, and a key keeps the position where it first appeared."""
    merged: dict[str, str] = {}
    for layer in layers:
        for item in layer:
            key, _, value = item.partition("=")
            merged[key] = value
    return tuple(f"{k}={v}" for k, v in merged.items())


def env_mapping(entries: Iterable[str]) -> dict[str, str]:
    """"KEY=value" entries as execve's environment."""
    return dict(e.partition("=")[::2] for e in entries)
