"""What the user asked for, as frozen data: ContainerSpec and its parts, and the parsers that
turn Docker-style flag values into them.

Every parser raises SdctrError with a message naming the flag and an example of a good value;
validation of a whole spec is a list of small named checks (runc's validator habit).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping

from sdctr.log import SdctrError
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
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


class RestartPolicy(enum.Enum):
    NO = "no"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"
    UNLESS_STOPPED = "unless-stopped"

    def systemd_restart(self) -> str:
        """The unit's Restart= value. unless-stopped is always: `sdctr stop` stops the unit, and
        systemd does not restart a unit that was stopped on purpose."""
        return {"no": "no", "on-failure": "on-failure"}.get(self.value, "always")

    def restarts_on(self, exit_status: int) -> bool:
        return self is not RestartPolicy.NO and (self is not RestartPolicy.ON_FAILURE or exit_status != 0)


class NetworkMode(enum.Enum):
    NONE = "none"
    HOST = "host"


class Resources(Record):
    cpu_shares: int | None = None  # -c: relative weight, 2..262144 (cgroup v1 cpu.shares)
    memory: int | None = None  # -m: bytes
    cpus: float | None = None  # --cpus: CPU quota in CPUs
    pids_limit: int = DEFAULT_PIDS_LIMIT


class Mount(Record):
    source: str
    target: str
    readonly: bool = False


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
    network: NetworkMode = NetworkMode.NONE
    interactive: bool = False
    tty: bool = False
    attached: bool = False  # no -d: the caller's terminal is the container's stdio
    remove: bool = False  # --rm: the record and snapshot go when the unit stops
    ephemeral: bool = False  # the snapshot is discarded at every stop, the record kept
    stop_timeout: int = DEFAULT_STOP_TIMEOUT
    created: float = 0.0
    # the snapshot, as create made it: its driver ("" in records made before it was recorded:
    # their image is resolved once more) and the image's layer chain (diff ids, bottom first)
    storage: str = ""
    layers: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def unit(self) -> str:
        return f"ctr-{self.short_id}.service"

    @property
    def hostname_or_id(self) -> str:
        """The container's hostname: -h's, else its short id (Docker's default)."""
        return self.hostname or self.short_id

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
            "mounts": tuple(Mount(**m) for m in d.get("mounts", ())),
            "capabilities": tuple(d.get("capabilities", DEFAULT_CAPS)),
            "resources": Resources(**d.get("resources", {})),
            "restart": RestartPolicy(d.get("restart", "no")),
            "network": NetworkMode(d.get("network", "none")),
        })


# --- parsers for flag values ------------------------------------------------------------------

def parse_size(flag: str, value: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)b?\s*", value.lower())
    if not m:
        raise SdctrError(f"{flag} {value!r} is not a size", hint="examples: 512m, 2g, 1048576")
    number = float(m.group(1)) * _SIZE_UNITS[m.group(2)]
    return int(number)


def parse_memory(value: str) -> int:
    size = parse_size("--memory", value)
    if size < 6 * 1024 * 1024:  # Docker's minimum: less cannot even start a shell
        raise SdctrError(f"--memory {value!r} is below the minimum of 6m")
    return size


def parse_cpu_shares(value: str) -> int:
    if not value.isdigit():
        raise SdctrError(f"--cpu-shares {value!r} is not a whole number", hint="the default weight is 1024")
    shares = int(value)
    if not 2 <= shares <= 262144:
        raise SdctrError(f"--cpu-shares {shares} is outside 2..262144")
    return shares


def parse_cpus(value: str) -> float:
    try:
        cpus = float(value)
    except ValueError:
        raise SdctrError(f"--cpus {value!r} is not a number", hint="examples: 0.5, 2") from None
    if not 0.01 <= cpus <= 1024:
        raise SdctrError(f"--cpus {value!r} is outside 0.01..1024")
    return cpus


def parse_pids_limit(value: str) -> int:
    try:
        limit = int(value)
    except ValueError:
        raise SdctrError(f"--pids-limit {value!r} is not a whole number") from None
    if limit == 0 or limit < -1:
        raise SdctrError(f"--pids-limit {limit}: use a positive number, or -1 for no limit")
    return limit


def parse_restart(value: str) -> RestartPolicy:
    name = value.split(":", 1)[0]  # on-failure:N is accepted; systemd's StartLimit bounds retries
    try:
        return RestartPolicy(name)
    except ValueError:
        choices = ", ".join(p.value for p in RestartPolicy)
        raise SdctrError(f"--restart {value!r} is not a restart policy", hint=f"one of {choices}") from None


def parse_network(value: str) -> NetworkMode:
    try:
        return NetworkMode(value)
    except ValueError:
        raise SdctrError(f"--network {value!r} is not supported yet", hint="use none or host") from None


def parse_mount(value: str) -> Mount:
    parts = value.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise SdctrError(f"--volume {value!r} is not SRC:DST[:ro]", hint="example: /srv/data:/data:ro")
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if not source.startswith("/"):
        raise SdctrError(f"--volume {value!r}: the source must be an absolute host path (named volumes "
                         "are not supported)")
    if not target.startswith("/") or target == "/":
        raise SdctrError(f"--volume {value!r}: the destination must be an absolute path other than /")
    if mode not in ("ro", "rw"):
        raise SdctrError(f"--volume {value!r}: mode {mode!r} is not ro or rw")
    return Mount(source, target, readonly=mode == "ro")


def parse_env(values: Iterable[str], lookup: Mapping[str, str]) -> list[str]:
    """-e KEY=VALUE, or -e KEY to pass the caller's value (skipped when the caller has none)."""
    out = []
    for v in values:
        key, eq, _ = v.partition("=")
        if not key or not re.fullmatch(r"[^=\s]+", key):
            raise SdctrError(f"--env {v!r} is not KEY=VALUE")
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
    return parse_env((ln for ln in lines if ln and not ln.startswith("#")), lookup)


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


def resolve_capabilities(add: Iterable[str], drop: Iterable[str]) -> tuple[str, ...]:
    from sdctr.caps import ALL_CAPS

    def norm(name: str) -> str:
        n = name.upper()
        return n if n.startswith("CAP_") or n == "ALL" else f"CAP_{n}"

    add_set, drop_set = {norm(c) for c in add}, {norm(c) for c in drop}
    for c in (add_set | drop_set) - {"ALL"}:
        if c not in ALL_CAPS:
            raise SdctrError(f"unknown capability {c!r}", hint="see capabilities(7), e.g. NET_ADMIN")
    caps = set(ALL_CAPS) if "ALL" in add_set else set(DEFAULT_CAPS) | add_set
    caps = set() if "ALL" in drop_set else caps - drop_set
    return tuple(c for c in ALL_CAPS if c in caps)


NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name) or len(name) > 128:
        raise SdctrError(f"--name {name!r} is not a valid container name",
                         hint="letters, digits, '_', '.', '-'; starting with a letter or digit")
    return name
