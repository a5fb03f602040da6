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
               rootfs_unit: str | None = None) -> list[Property]:
    """Unit properties for a container. `sdctr` is the argv prefix that runs this program;
    `stdio`, for an attached run, the caller's descriptors (else the journal); `prestart`, a
    command that readies the root file system without our hook (the storage driver's);
    `poststop`, a command that cleans up without Python in the common case and runs our hook,
    whose argv is appended to it, otherwise; `network`, a bridge network's netup and netdown
    commands that do without Python in the common case, each followed by its hook's argv;
    `rootfs_unit`, the unit that readies the root file system instead of any ExecStartPre of
    ours (a driver that needs the host's devices)."""
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
    props: list[Property] = [
        ("Description", "s", f"sdctr container {spec.name} ({spec.image})"),
        ("Slice", "s", "sdctr.slice"),
        # The init reports READY and hands over its child, the container's PID 1, as MAINPID:
        # systemd then supervises the container itself and no waiter of ours stays behind.
        # (Type=forking with a PID file loses a race with commands that exit at once.)
        ("Type", "s", "notify"),
        ("NotifyAccess", "s", "main"),
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
        ("Restart", "s", spec.restart.systemd_restart()),
        *restart_properties(spec, host),
        ("SyslogIdentifier", "s", spec.name),
        # The field names of Docker's journald log driver, so existing queries keep working.
        ("LogExtraFields", "aay", [f"{k}={v}".encode() for k, v in (
            ("CONTAINER_ID", spec.short_id), ("CONTAINER_ID_FULL", spec.id),
            ("CONTAINER_NAME", spec.name), ("IMAGE_NAME", spec.image))]),
        ("TasksMax", "t", INFINITY if r.pids_limit < 0 else r.pids_limit),
        *device_properties(spec),
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
    if spec.health_cmd:  # its check's timer, once the container runs (sdctr.runtime.health)
        props.append(("ExecStartPost", "a(sasb)", [(sdctr[0], [*sdctr, "hook", "health", spec.id], True)]))
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

_SECTION_UNIT = {"Description", "CollectMode", "Requires", "After"}
_FILE_NAMES = {"TimeoutStopUSec": "TimeoutStopSec", "CPUQuotaPerSecUSec": "CPUQuota",
               "LogRateLimitIntervalUSec": "LogRateLimitIntervalSec", "RestartUSec": "RestartSec",
               "RestartMaxDelayUSec": "RestartMaxDelaySec",
               # 219's name, in [Service]; every later systemd still reads it there
               "StartLimitIntervalUSec": "StartLimitInterval"}
_SIGNAL_NAMES = {15: "SIGTERM", 9: "SIGKILL"}


def unit_file(props: Sequence[Property]) -> str:
    """The same unit as a file: what an old systemd cannot take over D-Bus, it reads from disk."""
    unit, service = file_sections(props)
    return "[Unit]\n" + "\n".join(unit) + "\n\n[Service]\n" + "\n".join(service) + "\n"


def file_sections(props: Sequence[Property]) -> tuple[list[str], list[str]]:
    """The properties as a unit file's `Key=value` lines: its [Unit] section's, its [Service]'s.
    unit_file() and the generator's template (sdctr.systemd.generator) both write these."""
    unit: list[str] = []
    service: list[str] = []
    for name, _, value in props:
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
        elif name in ("Requires", "After"):
            rendered = " ".join(value)
        elif name == "SuccessExitStatus":
            statuses, signals = value
            rendered = " ".join([*map(str, statuses), *(_SIGNAL_NAMES[n] for n in signals)])
        elif name == "TimeoutStopUSec":
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
