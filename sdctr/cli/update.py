"""`sdctr update [-c SHARES] [-m BYTES] [--cpus N] [--pids-limit N] [--property KEY=VALUE]
CONTAINER...`, as Docker's: the record changed (the next start has the new limits), and a running
container's unit changed at once over D-Bus (SetUnitProperties: systemd writes the cgroup files
now). The unit's properties are the ones properties() makes for the new record, so a started and
an updated container cannot differ.

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
import sys

from sdctr.log import SdctrError
from sdctr.options import LIST, OPTIONS, UPDATABLE
from sdctr.paths import Paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdctr.spec import Resources
    from sdctr.systemd.properties import Property

# the unit properties a limit becomes (properties() names them by cgroup version) -> its field;
# v2's MemorySwapMax is --memory-swap less the memory, so it changes with the memory
PROPERTY_FIELD = {"CPUShares": "cpu_shares", "CPUWeight": "cpu_shares", "MemoryLimit": "memory",
                  "MemoryMax": "memory", "MemorySwapMax": "memory", "CPUQuotaPerSecUSec": "cpus",
                  "TasksMax": "pids_limit"}


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
        resources = updated(spec.resources, changes)
        spec = spec.replace(resources=resources)
        if spec.declared or sd.active_state(spec.unit) in RUNNING_STATES:
            # only what the user changed: a property never set on this unit (a quota) stays unset
            props = [p for p in properties(spec, host, sdctr_argv(root_args(paths)))
                     if PROPERTY_FIELD.get(p[0]) in changes]
            props += property_changes(changes.get("properties", ()))  # type: ignore[arg-type]
            sd.set_properties(spec.unit, props, runtime=not spec.declared)
        save_spec(paths, spec)
        if spec.declared:
            print(f"sdctr: {spec.name} is declared: the change is kept as drop-ins of {spec.unit} "
                  f"(systemctl cat {spec.unit}), over its file's keys until `systemctl revert "
                  f"{spec.unit}`", file=sys.stderr)
        print(ref)
    return 0


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
    if given:
        keys = {a.partition("=")[0] for a in given}
        fields["properties"] = (*(a for a in r.properties if a.partition("=")[0] not in keys), *given)
    new = r.replace(**fields)
    swap, memory = new.memory_swap, new.memory
    if "memory" in changes and swap is not None and swap != -1 and memory is not None and memory > swap:
        raise SdctrError(f"--memory {new.memory} is above the container's --memory-swap {swap}: it counts "
                         "memory and swap together", hint="remove and run the container again to change both")
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
