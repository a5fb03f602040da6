"""A unit's cgroup on this host: one home for every path sdctr reads or writes under
/sys/fs/cgroup, on cgroup v1 (each controller its own hierarchy: RHEL7, and hybrid hosts) and v2
(one unified hierarchy) alike. The unit's poststop.sh reads the same OOM counters in shell, to
keep Python off the common stop path: change both together."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from sdctr.log import SdctrError

ROOT = Path("/sys/fs/cgroup")

TYPE_CHECKING = False  # typing costs ~3 ms to import, and the hooks need none of it
if TYPE_CHECKING:
    from collections.abc import Iterator


def unit_dir(control_group: str, controller: str) -> Path | None:
    """The directory with a controller's files for a unit's cgroup (systemd's ControlGroup
    property): that controller's v1 hierarchy where it has one, else the unified hierarchy."""
    cg = control_group.lstrip("/")
    if not cg:
        return None
    for base in (ROOT / controller, ROOT):
        d = base / cg
        if d.is_dir() and any(d.glob(f"{controller}.*")):
            return d
    return None


def processes(control_group: str) -> list[int]:
    """Every process in the unit's cgroup and below it."""
    d = unit_dir(control_group, "pids") or unit_dir(control_group, "memory")
    if d is None:
        return []
    found: set[int] = set()
    for procs in d.rglob("cgroup.procs"):
        found.update(int(p) for p in procs.read_text().split())
    return sorted(found)


def usage(control_group: str) -> dict[str, int]:
    """cpu_ns, memory, memory_limit, pids, block_read and block_write of a unit, from the
    kernel's own counters."""
    cpu_v1 = unit_dir(control_group, "cpuacct")
    mem = unit_dir(control_group, "memory")
    pids = unit_dir(control_group, "pids")
    out = {"cpu_ns": 0, "memory": 0, "memory_limit": 0, "pids": 0}
    if cpu_v1 is not None and (cpu_v1 / "cpuacct.usage").exists():
        out["cpu_ns"] = _read_int(cpu_v1 / "cpuacct.usage")
    elif mem is not None and (mem / "cpu.stat").exists():  # v2: cpu.stat is always there
        out["cpu_ns"] = _keyed(mem / "cpu.stat", "usage_usec") * 1000
    else:  # v1 without cpuacct beside cpu (not comounted): systemd put the unit in neither
        out["cpu_ns"] = _process_times(processes(control_group))
    if mem is not None:
        v1 = (mem / "memory.usage_in_bytes").exists()
        out["memory"] = _read_int(mem / ("memory.usage_in_bytes" if v1 else "memory.current"))
        out["memory_limit"] = _read_int(mem / ("memory.limit_in_bytes" if v1 else "memory.max"))
    if pids is not None:
        out["pids"] = _read_int(pids / "pids.current")
    out["block_read"], out["block_write"] = block_io(control_group)
    return out


def _process_times(pids: list[int]) -> int:
    """CPU time of these processes so far (user and system, theirs and their reaped children's),
    in nanoseconds: what a cgroup without a CPU counter leaves us."""
    tick = 1e9 / os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime (fields 14-17)
    return int(total * tick)


def block_io(control_group: str) -> tuple[int, int]:
    """Bytes read and written to block devices by the unit (IOAccounting): v2's io.stat, v1's
    blkio throttle counters (which count every device, whatever its scheduler)."""
    v1 = unit_dir(control_group, "blkio")
    read = written = 0
    if v1 is not None:
        for name in ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes"):
            try:
                lines = (v1 / name).read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if len(fields) == 3 and fields[2].isdigit():
                    read += int(fields[2]) if fields[1] == "Read" else 0
                    written += int(fields[2]) if fields[1] == "Write" else 0
            return read, written
        return read, written
    v2 = unit_dir(control_group, "io")
    try:
        lines = (v2 / "io.stat").read_text().splitlines() if v2 is not None else []
    except OSError:
        lines = []
    for line in lines:
        for item in line.split()[1:]:
            key, _, value = item.partition("=")
            read += int(value) if key == "rbytes" else 0
            written += int(value) if key == "wbytes" else 0
    return read, written


def oom_killed_here() -> bool:
    """Whether the kernel's OOM killer fired in this process's own cgroup: ExecStopPost runs in
    the unit's, and on cgroup v1 systemd reports an OOM kill as a plain SIGKILL."""
    return any(_keyed(f, "oom_kill") for f in _own_oom_counters())


def _own_oom_counters() -> Iterator[Path]:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if "memory" in controllers.split(","):
            yield ROOT / "memory" / rel / "memory.oom_control"
        elif controllers == "":
            yield ROOT / rel / "memory.events"
            yield ROOT / "unified" / rel / "memory.events"


def join(cgroup: str) -> None:
    """Into the unit's cgroup in every hierarchy that has it, each checked, so an exec'd command
    is never left outside the container's limits."""
    unified = (ROOT / "cgroup.controllers").exists()
    hierarchies = [ROOT] if unified else sorted(
        p for p in ROOT.iterdir() if p.is_dir() and not p.is_symlink())
    joined = 0
    for hierarchy in hierarchies:
        directory = hierarchy / cgroup.lstrip("/")
        if not directory.is_dir():
            continue  # a v1 controller the unit does not use
        procs = directory / "cgroup.procs"
        try:
            procs.write_text(f"{os.getpid()}\n")
            if str(os.getpid()) not in procs.read_text().split():
                raise OSError(errno.EPERM, "the kernel did not move us there")
        except OSError as e:
            raise SdctrError(f"cannot join the container's cgroup {directory}: {e.strerror}") from None
        joined += 1
    if not joined:
        raise SdctrError(f"cannot join the container's cgroup {cgroup}: no hierarchy under "
                         f"{ROOT} has it")


def _keyed(path: Path, key: str) -> int:
    """A value from a flat keyed file (memory.events, cpu.stat): 0 where absent."""
    try:
        for line in path.read_text().splitlines():
            k, _, value = line.partition(" ")
            if k == key:
                return int(value)
    except OSError:
        pass
    return 0


def _read_int(path: Path, default: int = 0) -> int:
    try:
        text = path.read_text().strip()
    except OSError:
        return default
    return int(text) if text.isdigit() else default
