"""`sdctr update [-c SHARES] [-m BYTES] [--cpus N] [--pids-limit N] CONTAINER...`, as Docker's:
the record changed (the next start has the new limits), and a running container's unit changed
at once over D-Bus (SetUnitProperties, runtime: systemd writes the cgroup files now). The unit's
properties are the ones properties() makes for the new record, so a started and an updated
container cannot differ. A declared container's file is not rewritten: its next start after an
edit of the file takes the file's limits (say so, as podman's quadlet would)."""

from __future__ import annotations

import argparse
import sys

from sdctr.log import SdctrError
from sdctr.options import OPTIONS, UPDATABLE
from sdctr.paths import Paths

# the unit properties a limit becomes (properties() names them by cgroup version) -> its field
PROPERTY_FIELD = {"CPUShares": "cpu_shares", "CPUWeight": "cpu_shares", "MemoryLimit": "memory",
                  "MemoryMax": "memory", "CPUQuotaPerSecUSec": "cpus", "TasksMax": "pids_limit"}


def cmd_update(args: argparse.Namespace) -> int:
    from sdctr.runtime.lifecycle import RUNNING_STATES, root_args
    from sdctr.state import find, save_spec
    from sdctr.systemd.manager import Systemd
    from sdctr.systemd.properties import properties, sdctr_argv

    table = {o.dest: o for o in OPTIONS if o.dest in UPDATABLE}
    changes = {dest: table[dest].parse(table[dest].flag, value)  # type: ignore[misc]
               for dest in UPDATABLE if (value := getattr(args, dest, None)) is not None}
    if not changes:
        raise SdctrError("update needs a limit to change", hint="e.g. sdctr update -m 512m web")
    paths = Paths.from_root(args.root)
    sd = Systemd()
    host = sd.host(force_unit_file=args.unit_file_mode)
    for ref in args.containers:
        spec = find(paths, ref)
        spec = spec.replace(resources=spec.resources.replace(**changes))
        if sd.active_state(spec.unit) in RUNNING_STATES:
            # only what the user changed: a property never set on this unit (a quota) stays unset
            props = [p for p in properties(spec, host, sdctr_argv(root_args(paths)))
                     if PROPERTY_FIELD.get(p[0]) in changes]
            sd.set_properties(spec.unit, props, runtime=True)
        save_spec(paths, spec)
        if spec.declared:
            print(f"sdctr: warning: {spec.name} is declared: the next start after an edit of its file "
                  "takes the file's limits", file=sys.stderr)
        print(ref)
    return 0

