"""`sdctr stats`: usage straight from the unit's cgroup files, v1 or v2 alike."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sdctr.runtime import lifecycle as containers
from sdctr.spec import ContainerSpec


def read_int(path: Path, default: int = 0) -> int:
    try:
        text = path.read_text().strip()
    except OSError:
        return default
    return int(text) if text.isdigit() else default


def sample(unit: dict[str, Any]) -> dict[str, int]:
    """cpu_ns, memory, memory_limit, pids for one unit."""
    cpu_v1 = containers.cgroup_dir(unit, "cpuacct")
    mem_v1 = containers.cgroup_dir(unit, "memory")
    pids = containers.cgroup_dir(unit, "pids")
    out = {"cpu_ns": 0, "memory": 0, "memory_limit": 0, "pids": 0}
    if cpu_v1 is not None and (cpu_v1 / "cpuacct.usage").exists():
        out["cpu_ns"] = read_int(cpu_v1 / "cpuacct.usage")
    elif mem_v1 is not None and (mem_v1 / "cpu.stat").exists():
        for line in (mem_v1 / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):
                out["cpu_ns"] = int(line.split()[1]) * 1000
    if mem_v1 is not None:
        v1 = (mem_v1 / "memory.usage_in_bytes").exists()
        out["memory"] = read_int(mem_v1 / ("memory.usage_in_bytes" if v1 else "memory.current"))
        out["memory_limit"] = read_int(mem_v1 / ("memory.limit_in_bytes" if v1 else "memory.max"))
    if pids is not None:
        out["pids"] = read_int(pids / "pids.current")
    return out


def host_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 1


def show(sd: Any, specs: list[ContainerSpec], stream: bool) -> int:
    from sdctr.cli.verbs import table
    from sdctr.image.progress import human_size

    while True:
        units = {s.id: sd.unit_state(s.unit) for s in specs}
        first = {cid: sample(u) for cid, u in units.items()}
        t0 = time.monotonic()
        time.sleep(0.5)
        elapsed = time.monotonic() - t0
        rows = []
        for s in specs:
            now = sample(units[s.id])
            cpu = (now["cpu_ns"] - first[s.id]["cpu_ns"]) / (elapsed * 1e9) * 100
            limit = min(now["memory_limit"] or host_memory(), host_memory())  # "no limit" is the host's
            rows.append([s.short_id, s.name, f"{cpu:.2f}%",
                         f"{human_size(now['memory'], True)} / {human_size(limit, True)}",
                         f"{now['memory'] / limit * 100:.2f}%", str(now["pids"])])
        if stream:
            print("\033[2J\033[H", end="")
        table(["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"], rows)
        if not stream:
            return 0
