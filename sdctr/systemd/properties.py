"""Unit properties for a container: a pure function from a spec and the host's facts, tested
without any bus (pystemd's unit_signatures habit), and the same unit as a file for a systemd too
old to take it over D-Bus. Both the transient path (systemd.manager) and the generator of
declared containers (systemd.generator, through its template) use it.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence

from sdctr import unitprops
from sdctr.log import SdctrError
from sdctr.paths import STOP_SCRIPT
from sdctr.record import Record
from sdctr.spec import ContainerSpec, NetworkMode, RestartPolicy

TYPE_CHECKING = False  # typing costs ~3 ms to import, and run needs none of it
if TYPE_CHECKING:
    from typing import Any

Property = tuple[str, str, "Any"]  # (name, D-Bus signature, value)

# Transient services accept ExecStartPre/ExecStopPost and LogExtraFields from v236 on.
FIRST_FULL_TRANSIENT = 236
# LogRateLimitIntervalSec= exists from v240 on; older journald applies its global limit
# (RateLimitIntervalSec/RateLimitBurst in journald.conf) to every unit
FIRST_IO_ACCOUNTING = 230  # IOAccounting= (v1: blkio); before it, BlockIOAccounting=
LAST_BLOCKIO = 255  # BlockIO*= went in 256
FIRST_LOG_RATE_LIMIT = 240

# Docker's default device cgroup (moby oci/defaults.go, runc's AllowedDevices): creating any node
# is allowed (an image's own /dev entries unpack), reading or writing one is not, except the
# pseudo devices every program expects and the container's own ptys. Without this, root in a
# container can `mknod /tmp/d b 254 0` and read the host's disk.
DEVICE_ALLOW = (
    ("char-*", "m"), ("block-*", "m"),
    ("/dev/null", "rwm"), ("/dev/zero", "rwm"), ("/dev/full", "rwm"),
    ("/dev/random", "rwm"), ("/dev/urandom", "rwm"),
    ("/dev/tty", "rwm"), ("/dev/console", "rwm"), ("/dev/ptmx", "rwm"), ("char-pts", "rwm"),
)

INFINITY = 2**64 - 1
SETUP_UNIT = "sdctr-setup.service"  # units/: storage and the default bridge made at boot

# Docker restarts a container 100 ms after it exits and doubles the delay at each restart, up to a
# minute (moby restartmanager). systemd grows RestartSec= towards RestartMaxDelaySec= in
# RestartSteps= exponential steps from v254 on: 100 ms * 600^(n/9), a factor of 2.04 a step.
# Older systemd restarts at the fixed 100 ms (its default and Docker's first delay).
FIRST_RESTART_STEPS = 254
RESTART_DELAY_USEC = 100_000
RESTART_MAX_DELAY_USEC = 60_000_000
RESTART_STEPS = 9  # log2(60 s / 100 ms), rounded
# on-failure:N's start limit never ends: finite, as systemd 219 adds it to a timestamp
START_LIMIT_FOREVER_USEC = 100 * 365 * 86400 * 1_000_000

# (exit statuses, signals) of a container that ended by `sdctr stop`, `docker stop`'s 143 and 137
STOP_EXIT_STATUSES = ([128 + 15, 128 + 9], [15, 9])


class Host(Record):
    cgroup_version: int  # 1: the v1 controllers (RHEL7-style, hybrid included); 2: unified
    systemd_version: int

    @property
    def transient_hooks(self) -> bool:
        return self.systemd_version >= FIRST_FULL_TRANSIENT


def cgroup_version() -> int:
    """2 when /sys/fs/cgroup itself is the unified hierarchy; a hybrid host's v1 controllers
    (where limits really live) make it 1."""
    return 2 if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else 1


def cpu_weight(shares: int) -> int:
    """runc's current CPUShares -> CPUWeight mapping (a quadratic in log2 space), so that 1024,
    the default share, is 100, the default weight; 2 -> 1 and 262144 -> 10000 at the ends."""
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    lg = math.log2(shares)
    exponent = (lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0
    return math.ceil(10**exponent)


def sdctr_argv(root_args: Sequence[str]) -> list[str]:
    """How the unit calls back into sdctr: the same interpreter and package as this process."""
    argv0 = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(argv0) == "sdctr" and os.access(argv0, os.X_OK):
        return [argv0, *root_args]
    return [sys.executable, "-m", "sdctr", *root_args]


# seconds the stop hooks may take beyond the grace period before systemd kills them
HOOK_TIMEOUT = 60


def rootfs_unit(cid: str) -> str:
    """The unit that activates a container's root file system where that needs the host's
    devices (the thin pool's /dev/mapper/control), outside the container's device cgroup: an
    instance of units/sdctr-rootfs@.service."""
    return f"{ROOTFS_TEMPLATE}{cid}.service"


ROOTFS_TEMPLATE = "sdctr-rootfs@"


def properties(spec: ContainerSpec, host: Host, sdctr: Sequence[str],
               stdio: tuple[int, int, int] | None = None, *,
               prestart: Sequence[str] | None = None,
               poststop: Sequence[str] | None = None,
               network: tuple[Sequence[str], Sequence[str]] | None = None,
               joins: str | None = None,
               rootfs_unit: str | None = None) -> list[Property]:
    """Unit properties for a container. `sdctr` is the argv prefix that runs this program;
    `stdio`, for an attached run, the caller's descriptors (else the journal); `prestart`, a
    command that readies the root file system without our hook (the storage driver's);
    `poststop`, a command that cleans up without Python in the common case and runs our hook,
    whose argv is appended to it, otherwise; `network`, a bridge network's netup and netdown
    commands that do without Python in the common case, each followed by its hook's argv;
    `joins`, with --network container:NAME, NAME's unit; `rootfs_unit`, the unit that readies
    the root file system instead of any ExecStartPre of ours (a driver that needs the host's
    devices)."""
    r = spec.resources

    def exec_(*args: str) -> list[tuple[str, list[str], bool]]:
        argv = [*sdctr, *args]
        return [(argv[0], argv, False)]

    hook_poststop = [*sdctr, "hook", "poststop", spec.id]
    stop_post = [*poststop, *hook_poststop] if poststop else hook_poststop
    start_pre = [(prestart[0], list(prestart), False)] if prestart else exec_("hook", "prestart", spec.id)
    if rootfs_unit:
        start_pre = []
    stop_posts = [(stop_post[0], stop_post, False)]
    if spec.network is NetworkMode.BRIDGE:
        # the network's part after the rootfs and before the init; torn down first, before the
        # record may go with --rm; its failure must not keep the rootfs mounted (ignored: True)
        netup = [*(network[0] if network else ()), *sdctr, "hook", "netup", spec.id]
        netdown = [*(network[1] if network else ()), *sdctr, "hook", "netdown", spec.id]
        start_pre.append((netup[0], netup, False))
        stop_posts.insert(0, (netdown[0], netdown, True))
    if host.cgroup_version == 1 and r.memory_swap not in (None, -1):
        start_pre.append(memsw_command(r.memory_swap))
    props: list[Property] = [
        ("Description", "s", f"sdctr container {spec.name} ({spec.image})"),
        ("Slice", "s", "sdctr.slice"),
        # at boot, after what sdctr-setup.service makes (storage, the bridge and its NAT); only
        # ordered, not wanted: a run does not start a unit the administrator left disabled, and
        # the hooks make the same where it did not run (declared units want it: their template)
        ("After", "as", [SETUP_UNIT]),
        # The init reports READY and hands over its child, the container's PID 1, as MAINPID:
        # systemd then supervises the container itself and no waiter of ours stays behind.
        # (Type=forking with a PID file loses a race with commands that exit at once.)
        ("Type", "s", "notify"),
        # all: a health check's helper says READY=1, WATCHDOG=1 and STATUS= (sdctr.init.health),
        # and a declared container learns of its image's check only at start. The container's
        # own processes cannot reach the socket (another root, and a path, not an abstract name)
        # unless --sdnotify=container hands it in, as podman's units do.
        ("NotifyAccess", "s", "all"),
        *([("ExecStartPre", "a(sasb)", start_pre)] if start_pre else []),
        ("ExecStart", "a(sasb)", exec_("init", spec.id)),
        # SIGTERM to the main process, the wait for it that systemd would not do and SIGKILL
        # to it once the grace period is over (stop.sh)
        ("ExecStop", "a(sasb)", [("/bin/sh", ["/bin/sh", STOP_SCRIPT, str(spec.stop_timeout)], False)]),
        ("ExecStopPost", "a(sasb)", stop_posts),
        # SIGTERM to the container's PID 1, which forwards it; SIGKILL to all at the timeout,
        # which is for hooks that hang: it covers ExecStopPost too, and must not cut one short
        ("KillMode", "s", "mixed"),
        ("TimeoutStopUSec", "t", (spec.stop_timeout + HOOK_TIMEOUT) * 1_000_000),
        # A container stopped on request is not a failed unit (DESIGN invariant 6): the reaper
        # exits 128+15 after our SIGTERM, or dies of the SIGKILL at the timeout. (A command that
        # exits 143 or 137 by itself passes as stopped too: Docker cannot tell them apart either.)
        ("SuccessExitStatus", "(aiai)", STOP_EXIT_STATUSES),
        ("Restart", "s", "on-watchdog" if spec.health_on_failure == "restart"
         and spec.restart is RestartPolicy.NO else spec.restart.systemd_restart()),
        *restart_properties(spec, host),
        ("SyslogIdentifier", "s", spec.name),
        # The field names of Docker's journald log driver, so existing queries keep working.
        ("LogExtraFields", "aay", [f"{k}={v}".encode() for k, v in (
            ("CONTAINER_ID", spec.short_id), ("CONTAINER_ID_FULL", spec.id),
            ("CONTAINER_NAME", spec.name), ("IMAGE_NAME", spec.image))]),
        ("TasksMax", "t", INFINITY if r.pids_limit < 0 else r.pids_limit),
        *device_properties(spec),
        # `sdctr stats`: CPU time (cpuacct on v1) and block I/O from the unit's own cgroup
        ("CPUAccounting", "b", True),
        *io_accounting(host),
    ]
    if rootfs_unit:
        # Requires: a failed activation fails the start, a stop or restart of the rootfs unit
        # reaches the container; After: mounted before the init pivots into it, and on the way
        # down the container's hooks run before its unmount. The rootfs unit stops itself once
        # no container needs it (StopWhenUnneeded), so a crash deactivates it as a stop does.
        props += [("Requires", "as", [rootfs_unit]), ("After", "as", [rootfs_unit])]
    if host.systemd_version >= FIRST_LOG_RATE_LIMIT or not host.transient_hooks:
        # journald's per-unit rate limit (10,000 lines in 30 s, scaled by free disk: 37,500 here)
        # drops a chatty container's lines without a word; `docker logs` loses none. 0 would
        # mean "unset" to systemd (journald's defaults apply: seen on 252), so the smallest
        # interval stands for none: no burst fits in one microsecond. A unit file on an old
        # systemd only warns about the key, so the file keeps it for when systemd is updated.
        props.append(("LogRateLimitIntervalUSec", "t", 1))
    if r.cpu_shares is not None:
        props.append(("CPUShares", "t", r.cpu_shares) if host.cgroup_version == 1
                     else ("CPUWeight", "t", cpu_weight(r.cpu_shares)))
    if r.memory is not None:
        props.append(("MemoryLimit", "t", r.memory) if host.cgroup_version == 1
                     else ("MemoryMax", "t", r.memory))
    if r.cpus is not None:
        props.append(("CPUQuotaPerSecUSec", "t", int(r.cpus * 1_000_000)))
    props += resource_properties(spec, host)
    if joins:
        # in NAME's network namespace: stopped with NAME (its network goes), restarted with it
        # into the new one (sdctr.net.joined)
        props += [("BindsTo", "as", [joins]), ("After", "as", [joins])]
    props += health_properties(spec, host)
    if spec.remove:  # a failed --rm container must not linger as a failed unit
        props.append(("CollectMode", "s", "inactive-or-failed"))
    if stdio is None:
        props += [("StandardInput", "s", "null"), ("StandardOutput", "s", "journal"),
                  ("StandardError", "s", "journal")]
    else:
        props += [("StandardInputFileDescriptor", "h", stdio[0]),
                  ("StandardOutputFileDescriptor", "h", stdio[1]),
                  ("StandardErrorFileDescriptor", "h", stdio[2])]
    return props


# systemd has no property for cgroup v1's memory.memsw.limit_in_bytes (MemorySwapMax is v2's):
# the unit's first ExecStartPre runs in its memory cgroup, where systemd set memory.limit_in_bytes
# already (the memsw limit may not be below it), and writes it there. A kernel that does not
# account swap (no swapaccount=1) has no such file: the start fails saying so, where Docker only
# warns and runs without the limit.
MEMSW_SCRIPT = ("f=/sys/fs/cgroup/memory$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)"
                "/memory.memsw.limit_in_bytes; if [ -e $f ]; then echo $1 > $f; else "
                "echo 'sdctr: --memory-swap: this kernel does not account swap (boot it with "
                "swapaccount=1)' >&2; exit 1; fi")


UNIFIED_MEMORY = ("MemoryMin", "MemoryLow", "MemoryHigh", "MemorySwapMax")


def memsw_command(limit: int) -> tuple[str, list[str], bool]:
    return ("/bin/sh", ["/bin/sh", "-c", MEMSW_SCRIPT, "memsw", str(limit)], False)


def blkio_to_io_weight(weight: int) -> int:
    """runc's --blkio-weight on cgroup v2 (ConvertBlkIOToIOWeightValue): 10..1000 onto 1..10000."""
    return 1 + (weight - 10) * 9999 // 990


def resource_properties(spec: ContainerSpec, host: Host) -> list[Property]:
    """--memory-swap, --cpuset-cpus, --blkio-weight and --ulimit by the host's names, then
    --property's as given (last: where one names a property a flag set too, it wins, as a later
    assignment does in systemd). On cgroup v1 systemd manages no cpuset controller: --cpuset-cpus
    is CPUAffinity=, the affinity of every process of the unit (a placement, as taskset's: a
    process may widen its own), where cgroup v2's AllowedCPUs= is the cpuset.cpus a container
    cannot leave."""
    r = spec.resources
    props: list[Property] = []
    if host.cgroup_version == 1 and r.memory is not None and any(
            a.partition("=")[0] in UNIFIED_MEMORY for a in r.properties):
        # systemd on v1 takes MemoryMax= for the limit, and ignores MemoryLimit=, as soon as a
        # unit has one of v2's memory settings (unit_has_unified_memory_config, src/core/cgroup.c;
        # seen on 252: --property MemoryHigh=200M left -m 64m's memory.limit_in_bytes unlimited)
        props.append(("MemoryMax", "t", r.memory))
    if r.memory_swap is not None and host.cgroup_version == 2:
        swap = unitprops.INFINITY if r.memory_swap == -1 or r.memory is None else r.memory_swap - r.memory
        props.append(("MemorySwapMax", "t", swap))
    if r.cpuset_cpus:
        props.append(("AllowedCPUs" if host.cgroup_version == 2 else "CPUAffinity", "ay",
                      unitprops.cpu_mask(unitprops.cpu_list(r.cpuset_cpus))))
    if r.blkio_weight is not None:
        props.append(("BlockIOWeight", "t", r.blkio_weight) if host.cgroup_version == 1
                     else ("IOWeight", "t", blkio_to_io_weight(r.blkio_weight)))
    for ulimit in r.ulimits:
        name, _, limits = ulimit.partition("=")
        props += unitprops.parse("--ulimit", f"Limit{name.upper()}={limits}")
    for assignment in r.properties:
        props += unitprops.parse("--property", assignment)
    return props


FIRST_WATCHDOG_SIGNAL = 240
# seconds a health check's watchdog allows beyond one interval and one timeout (a loaded host)
WATCHDOG_SLACK = 10


def health_properties(spec: ContainerSpec, host: Host) -> list[Property]:
    """A health check's helper (sdctr.init.health) says READY=1 after the first check that passes,
    so the start may take the start period and the retries' checks (and the hooks' time);
    WATCHDOG=1 after every check that leaves it not unhealthy, so the watchdog, set where the
    check acts (--health-on-failure kill or restart), covers one interval and one timeout.
    restart: SIGTERM (the container stops as on `sdctr stop`, its Restart= brings it back;
    on-watchdog where --restart has none); kill: SIGKILL, its --restart decides, as podman's."""
    if not spec.health_cmd:
        return []
    checks = spec.health_start_period + spec.health_retries * (spec.health_interval + spec.health_timeout)
    props: list[Property] = [("TimeoutStartUSec", "t", int((checks + HOOK_TIMEOUT) * 1_000_000))]
    if spec.health_on_failure in ("kill", "restart"):
        watchdog = spec.health_interval + spec.health_timeout + WATCHDOG_SLACK
        props.append(("WatchdogUSec", "t", int(watchdog * 1_000_000)))
        # before v240, SIGABRT: the reaper, PID 1 of its namespace, has no handler for it, so it
        # dies of the SIGKILL after TimeoutStopSec; a unit file keeps the key (only warned about)
        if host.systemd_version >= FIRST_WATCHDOG_SIGNAL or not host.transient_hooks:
            props.append(("WatchdogSignal", "i", 9 if spec.health_on_failure == "kill" else 15))
    return props


def io_accounting(host: Host) -> list[Property]:
    """IOAccounting= (which systemd maps to blkio on v1), or before 230 BlockIOAccounting= (gone
    in 256). On cgroup v1 BlockIOAccounting= while systemd has it: with any IO* setting, IOAccounting=
    included, systemd applies the IO* ones to blkio and ignores BlockIOWeight= (--blkio-weight on
    v1; seen on 252: blkio.bfq.weight stayed at the default). A unit file for an unknown systemd
    (a generator's) has both on v2: the other is a warning."""
    blockio = ("BlockIOAccounting", "b", True)
    if host.cgroup_version == 1 and (not host.systemd_version or host.systemd_version < LAST_BLOCKIO + 1):
        return [blockio]
    if not host.systemd_version:
        return [blockio, ("IOAccounting", "b", True)]
    return [("IOAccounting", "b", True) if host.systemd_version >= FIRST_IO_ACCOUNTING else blockio]


def device_properties(spec: ContainerSpec) -> list[Property]:
    """"closed": only the list (systemd adds nothing of its own beyond the pseudo devices), with
    --device's nodes by their host path (systemd reads its numbers at each start). --privileged:
    "auto" with no list is no device cgroup at all, every device, as Docker's."""
    if spec.privileged:
        return [("DevicePolicy", "s", "auto")]
    # one entry a node: systemd replaces a repeated path's access over D-Bus and adds to it
    # from a file; the kernel's rules are by number and add up, as Docker's
    access: dict[str, str] = {}
    for d in spec.devices:
        access[d.host_path] = "".join(c for c in "rwm" if c in access.get(d.host_path, "") + d.perms)
    return [("DevicePolicy", "s", "closed"), ("DeviceAllow", "a(ss)", [*DEVICE_ALLOW, *access.items()])]


def restart_properties(spec: ContainerSpec, host: Host) -> list[Property]:
    """Restarts as Docker's: systemd's start limit (5 starts in 10 s) would give up on a container
    that exits at once, which Docker restarts for ever (or on-failure:N's N times); the delay
    grows where systemd can grow it."""
    if spec.restart is RestartPolicy.NO:
        return []
    props: list[Property] = [("RestartUSec", "t", RESTART_DELAY_USEC)]
    if spec.restart is RestartPolicy.ON_FAILURE and spec.restart_retries:
        # the first start and N restarts, in any time; then the unit fails with start-limit-hit
        props += [("StartLimitIntervalUSec", "t", START_LIMIT_FOREVER_USEC),
                  ("StartLimitBurst", "u", spec.restart_retries + 1)]
    else:
        props.append(("StartLimitIntervalUSec", "t", 0))  # 0: no start limit
    if host.systemd_version >= FIRST_RESTART_STEPS:
        props += [("RestartSteps", "u", RESTART_STEPS), ("RestartMaxDelayUSec", "t", RESTART_MAX_DELAY_USEC)]
    return props


# --- unit files, for systemd older than FIRST_FULL_TRANSIENT ---------------------------------

# (dependencies written in [Service] are ignored by systemd)
_SECTION_UNIT = {"Description", "CollectMode", "Requires", "BindsTo", "After"}
_FILE_NAMES = {"TimeoutStopUSec": "TimeoutStopSec", "TimeoutStartUSec": "TimeoutStartSec",
               "WatchdogUSec": "WatchdogSec", "CPUQuotaPerSecUSec": "CPUQuota",
               "LogRateLimitIntervalUSec": "LogRateLimitIntervalSec", "RestartUSec": "RestartSec",
               "RestartMaxDelayUSec": "RestartMaxDelaySec",
               # 219's name, in [Service]; every later systemd still reads it there
               "StartLimitIntervalUSec": "StartLimitInterval"}
_SIGNAL_NAMES = {15: "SIGTERM", 9: "SIGKILL"}


def unit_file(props: Sequence[Property]) -> str:
    """The same unit as a file: what an old systemd cannot take over D-Bus, it reads from disk."""
    unit, service = file_sections(props)
    return "[Unit]\n" + "\n".join(unit) + "\n\n[Service]\n" + "\n".join(service) + "\n"


def file_sections(props: Sequence[Property]) -> tuple[list[str], list[str]]:  # noqa: PLR0912 - one per kind
    """The properties as a unit file's `Key=value` lines: its [Unit] section's, its [Service]'s.
    unit_file() and the generator's template (sdctr.systemd.generator) both write these."""
    unit: list[str] = []
    service: list[str] = []
    # a resource limit is two properties on the bus (LimitX, LimitXSoft) and one line in a file
    soft = {name[:-4]: value for name, _, value in props
            if name.startswith("Limit") and name.endswith("Soft")}
    for name, _, value in props:
        if name in unitprops.BUS_NAMES:  # --property's and the flags that become them
            line = unitprops.file_line(name, value, soft.get(name))
            if line:
                service.append(line)
            continue
        key = _FILE_NAMES.get(name, name)
        if name.startswith("Exec"):  # one line each, in order; "-": its failure is ignored
            service += [f"{key}={'-' if ignore else ''}{' '.join(_quote(a) for a in argv)}"
                        for _, argv, ignore in value]
            continue
        elif name == "LogExtraFields":
            service += [f"LogExtraFields={_quote(field.decode())}" for field in value]
            continue
        elif name == "DeviceAllow":
            service += [f"DeviceAllow={path} {access}" for path, access in value]
            continue
        elif name in ("Requires", "BindsTo", "After"):
            rendered = " ".join(value)
        elif name == "SuccessExitStatus":
            statuses, signals = value
            rendered = " ".join([*map(str, statuses), *(_SIGNAL_NAMES[n] for n in signals)])
        elif name == "WatchdogSignal":
            rendered = _SIGNAL_NAMES[value]
        elif isinstance(value, bool):
            rendered = "yes" if value else "no"
        elif name in ("TimeoutStopUSec", "TimeoutStartUSec", "WatchdogUSec"):
            rendered = f"{value / 1_000_000:g}s"
        elif name in ("LogRateLimitIntervalUSec", "RestartUSec", "RestartMaxDelayUSec",
                      "StartLimitIntervalUSec"):
            rendered = f"{value}us"
        elif name == "CPUQuotaPerSecUSec":
            rendered = f"{value / 10_000:g}%"
        elif name == "TasksMax" and value == INFINITY:
            rendered = "infinity"
        elif name.endswith("FileDescriptor"):
            raise SdctrError("an attached run needs a systemd that takes descriptors (v236 or newer)",
                             hint="run it detached with -d")
        else:
            rendered = str(value)
        (unit if name in _SECTION_UNIT else service).append(f"{key}={rendered}")
    return unit, service


_BARE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-=:@+,")


def _quote(arg: str) -> str:
    if arg and _BARE.issuperset(arg):  # a set, not a loop per character: the generator quotes ~4,000
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
