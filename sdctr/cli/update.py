"""`sdctr update [-c SHARES] [-m BYTES] [--cpus N] [--pids-limit N] [--memory-swap BYTES]
[--cpuset-cpus CPUS] [--blkio-weight W] [--property KEY=VALUE] CONTAINER...`, as Docker's: the
record changed (the next start has the new limits), and a running container's unit changed at
once over D-Bus (SetUnitProperties: systemd writes the cgroup files now; on cgroup v1 sdctr
writes the CPU affinity and memsw itself, v1_changes). The unit's properties are the ones
properties() makes for the new record, so a started and an updated container cannot differ.

A declared container's unit is the generator's, remade from its YAML file at every daemon-reload:
its change is made persistent (SetUnitProperties without `runtime`, as `systemctl set-property`),
so systemd keeps it as drop-ins in /etc/systemd/system.control/ctr-NAME.service.d/, which outlive
daemon-reloads and reboots, whether the container runs or not. Not written back into the YAML
file: PyYAML would drop the administrator's comments and layout, and a changed file remakes the
container (its writable layer too) at the next start (sdctr.runtime.declared). `systemctl cat`
shows the drop-ins; `systemctl revert ctr-NAME` drops them, and the file's keys rule again.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from sdctr.log import SdctrError
from sdctr.options import LIST, OPTIONS, UPDATABLE
from sdctr.paths import Paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdctr.spec import ContainerSpec, Resources
    from sdctr.systemd.manager import Systemd
    from sdctr.systemd.properties import Property

# the unit properties a limit becomes (properties() names them by cgroup version) -> its fields;
# v2's MemorySwapMax is --memory-swap less the memory, so it changes with either. Not v1's
# CPUAffinity nor its memsw ExecStartPre: systemd takes neither for a loaded unit (v1_changes)
PROPERTY_FIELDS = {"CPUShares": {"cpu_shares"}, "CPUWeight": {"cpu_shares"}, "MemoryLimit": {"memory"},
                   "MemoryMax": {"memory"}, "MemorySwapMax": {"memory", "memory_swap"},
                   "CPUQuotaPerSecUSec": {"cpus"}, "TasksMax": {"pids_limit"},
                   "AllowedCPUs": {"cpuset_cpus"}, "BlockIOWeight": {"blkio_weight"},
                   "IOWeight": {"blkio_weight"}}

# the flags whose properties --property may also set
FLAG_PROPERTIES = {"blkio_weight": ("BlockIOWeight", "IOWeight"),
                   "cpuset_cpus": ("AllowedCPUs", "CPUAffinity"), "memory_swap": ("MemorySwapMax",)}


def cmd_update(args: argparse.Namespace) -> int:
    from sdctr.runtime.lifecycle import RUNNING_STATES, root_args
    from sdctr.state import find, save_spec
    from sdctr.systemd.manager import Systemd
    from sdctr.systemd.properties import properties, sdctr_argv

    changes = parse_changes(args)
    paths = Paths.from_root(args.root)
    sd = Systemd()
    host = sd.host(force_unit_file=args.unit_file_mode)
    for ref in args.containers:
        spec = find(paths, ref)
        old = spec.resources
        spec = spec.replace(resources=updated(old, changes))
        running = sd.active_state(spec.unit) in RUNNING_STATES
        if spec.declared or running:
            # only what the user changed: a property never set on this unit (a quota) stays unset
            props = [p for p in properties(spec, host, sdctr_argv(root_args(paths)))
                     if PROPERTY_FIELDS.get(p[0], set()) & changes.keys()]
            props += property_changes(changes.get("properties", ()))  # type: ignore[arg-type]
            if host.cgroup_version == 1:
                v1_changes(sd, spec, old, props, changes=changes, running=running)
            elif props:
                sd.set_properties(spec.unit, props, runtime=not spec.declared)
        save_spec(paths, spec)
        if spec.declared:
            print(f"sdctr: {spec.name} is declared: the change is kept as drop-ins of {spec.unit} "
                  f"(systemctl cat {spec.unit}), over its file's keys until `systemctl revert "
                  f"{spec.unit}`", file=sys.stderr)
        print(ref)
    return 0


def v1_changes(sd: Systemd, spec: ContainerSpec, old: Resources, props: list[Property], *,
               changes: dict[str, object], running: bool) -> None:
    """On cgroup v1, --cpuset-cpus and --memory-swap have no property systemd changes on a loaded
    unit (CPUAffinity is the processes' own; memsw an ExecStartPre): a running container's are
    written here, as Docker's update writes cpuset.cpus and memory.memsw.limit_in_bytes, and a
    declared container's next start gets them from a drop-in beside SetUnitProperties' (a
    transient one's from its record). memsw is never below the memory limit: raised before
    systemd changes the memory limit, lowered after."""
    from sdctr import cgroups, unitprops
    from sdctr.systemd.properties import file_sections, memsw_command

    r = spec.resources
    swap = r.memory_swap if "memory_swap" in changes else None
    live = running and (swap is not None or "cpuset_cpus" in changes)
    cgroup = str(sd.unit_state(spec.unit).get("ControlGroup") or "") if live else ""
    memsw = cgroups.unit_dir(cgroup, "memory") if cgroup else None

    def write_memsw() -> None:
        if memsw is not None and swap is not None:
            (memsw / "memory.memsw.limit_in_bytes").write_text(str(swap))

    raising = swap is not None and (swap == -1 or old.memory_swap in (None, -1) or swap >= old.memory_swap)
    if raising:
        write_memsw()
    if props:
        sd.set_properties(spec.unit, props, runtime=not spec.declared)
    if not raising:
        write_memsw()
    if "cpuset_cpus" in changes and cgroup:
        cpus = unitprops.cpu_list(r.cpuset_cpus)
        for pid in cgroups.processes(cgroup):
            for task in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else ():
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(int(task), cpus)
    if spec.declared:
        if "cpuset_cpus" in changes:
            affinity = ["CPUAffinity=", f"CPUAffinity={r.cpuset_cpus}"]  # "": the file's mask reset
            sd.write_control_drop_in(spec.unit, "CPUAffinity", affinity)
        if "memory_swap" in changes and r.memory_swap is not None:
            lines = file_sections([("ExecStartPre", "a(sasb)", [memsw_command(r.memory_swap)])])[1]
            sd.write_control_drop_in(spec.unit, "MemorySwap", lines)


def parse_changes(args: argparse.Namespace) -> dict[str, object]:
    """The limits given, parsed by the option table's parsers (errors name the flag)."""
    from sdctr import unitprops

    table = {o.dest: o for o in OPTIONS if o.dest in UPDATABLE}
    changes: dict[str, object] = {}
    for dest in UPDATABLE:
        value = getattr(args, dest, None)
        if value is None:
            continue
        option = table[dest]
        parse = option.parse
        assert parse is not None
        changes[dest] = (tuple(parse(option.flag, v) for v in value) if option.kind == LIST
                         else parse(option.flag, value))
    if not changes:
        raise SdctrError("update needs a limit to change", hint="e.g. sdctr update -m 512m web")
    for assignment in changes.get("properties", ()):  # type: ignore[attr-defined]
        key = assignment.partition("=")[0]
        if not unitprops.live(key):
            raise SdctrError(f"--property {assignment!r}: {key} is set on the processes as they start; "
                             "update changes the cgroup's properties alone",
                             hint="run the container again with it")
    return changes


def updated(r: Resources, changes: dict[str, object]) -> Resources:
    """The record's limits with the changes: a --property replaces the assignments of its key."""
    fields = {k: v for k, v in changes.items() if k != "properties"}
    given: tuple[str, ...] = changes.get("properties", ())  # type: ignore[assignment]
    # a flag replaces an earlier --property of its properties too (--blkio-weight 300 after
    # --property BlockIOWeight=800: 300, where the property, sent last, would win)
    keys = {a.partition("=")[0] for a in given} | {
        name for field in changes for name in FLAG_PROPERTIES.get(field, ())}
    if keys:
        fields["properties"] = (*(a for a in r.properties if a.partition("=")[0] not in keys), *given)
    new = r.replace(**fields)
    swap, memory = new.memory_swap, new.memory
    if "memory_swap" in changes and swap != -1 and memory is None:
        raise SdctrError("--memory-swap needs a memory limit: it is the limit of memory and swap together",
                         hint="e.g. sdctr update -m 256m --memory-swap 512m web")
    if swap is not None and swap != -1 and memory is not None and memory > swap:
        raise SdctrError(f"--memory {memory} is above --memory-swap {swap}: it counts memory and swap "
                         "together", hint="change both: sdctr update -m 256m --memory-swap 512m web")
    return new


def property_changes(given: tuple[str, ...]) -> list[Property]:
    """The properties to send for --property's: a list (addresses, device limits) emptied first,
    since systemd adds a running unit's list entries to those it has."""
    from sdctr import unitprops

    props: list[Property] = []
    reset: set[str] = set()
    for assignment in given:
        for name, sig, value in unitprops.parse("--property", assignment):
            if sig.startswith("a(") and name not in reset:
                reset.add(name)
                props.append((name, sig, []))
            props.append((name, sig, value))
    return props
