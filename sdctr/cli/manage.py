"""The verbs that manage containers beyond their lifecycle, as Docker spells and prints them:
pause, unpause, rename, top, diff, cp, commit, container prune, system df, system prune, info,
version. The work is sdctr.runtime's (pause, changes, copy); this module prints.

Exit statuses as Docker's: 1 when a container is missing (sdctr.cli.parser) or a multi-container
verb failed for one of them, 125 for sdctr's own errors.
"""

from __future__ import annotations

import argparse

from sdctr.cli.containers import for_each, paths_of
from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.spec import ContainerSpec
from sdctr.state import find

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdctr.systemd.manager import Systemd
    from sdctr.systemd.properties import Host


# --- pause, unpause -----------------------------------------------------------------------------

def cmd_pause(args: argparse.Namespace) -> int:
    from sdctr.runtime import lifecycle, pause

    def freeze(paths: Paths, sd: Systemd, host: Host, spec: ContainerSpec) -> None:
        unit = lifecycle.running_unit(sd, spec)
        cg = unit.get("ControlGroup") or pause.control_group(spec)
        if pause.is_paused(cg):
            raise SdctrError(f"container {spec.name} is already paused",
                             hint=f"'sdctr unpause {spec.name}' resumes it")
        pause.freeze(sd, host, spec, cg)
    return for_each(args, freeze)


def cmd_unpause(args: argparse.Namespace) -> int:
    from sdctr.runtime import lifecycle, pause

    def thaw(paths: Paths, sd: Systemd, host: Host, spec: ContainerSpec) -> None:
        unit = lifecycle.running_unit(sd, spec)
        cg = unit.get("ControlGroup") or pause.control_group(spec)
        if not pause.is_paused(cg):
            raise SdctrError(f"container {spec.name} is not paused")
        pause.thaw(sd, host, spec, cg)
    return for_each(args, thaw)


# --- rename -------------------------------------------------------------------------------------

def cmd_rename(args: argparse.Namespace) -> int:
    """`docker rename OLD NEW`: the record's name, claimed under the store's lock. The unit keeps
    its id-based name; its journal identifier follows at the next start."""
    from sdctr.options import parse_name
    from sdctr.state import locked, save_spec

    paths = paths_of(args)
    new = parse_name("the new name", args.new_name)
    with locked(paths):
        spec = find(paths, args.container)
        if spec.declared:
            raise SdctrError(f"container {spec.name} is declared in /etc/sdctr/containers: its name is "
                             "its file's", hint="rename the file instead")
        if spec.name == new:
            raise SdctrError(f"renaming container {spec.name!r} to the same name")
        save_spec(paths, spec.replace(name=new))
    return 0
