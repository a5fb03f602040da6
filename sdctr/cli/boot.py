"""`sdctr system autostart`: what sdctr-restart.service runs at boot.

`sdctr run -d --restart ...` makes a transient unit, which a reboot takes away. Rather than a
unit file in /etc/systemd/system per such container, one boot-time unit starts them again
(podman-restart's way): the record stays the only state, so no unit file can outlive its
container or go stale when sdctr or the host's systemd changes (DESIGN.md, invariant 1), /etc
stays the administrator's, and each container comes back with the properties today's sdctr
gives it. Declared containers (/etc/sdctr/containers) have units of their own and are left to
systemd.
"""

from __future__ import annotations

import argparse

from sdctr.log import SdctrError, error


def cmd_system_autostart(args: argparse.Namespace) -> int:
    from sdctr.cli.containers import _persist_detached, paths_of, systemd_of
    from sdctr.runtime import lifecycle as containers
    from sdctr.state import read_status

    paths = paths_of(args)
    sd, host = systemd_of(args)
    failed = 0
    for spec, active in containers.all_with_state(paths, sd):
        if spec.declared or active in containers.RUNNING_STATES:
            continue
        if not spec.restart.starts_at_boot(bool(read_status(paths, spec.id).get("stopped_by_user"))):
            continue
        try:
            containers.start(paths, _persist_detached(paths, spec), sd, host)
            print(spec.name)
        except SdctrError as e:  # one container that cannot start keeps none of the others down
            error(f"container {spec.name}: {e}", e.hint)
            failed += 1
    return 1 if failed else 0
