"""`sdctr system setup` and `sdctr system autostart`: what sdctr-setup.service and
sdctr-restart.service run at boot.

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
import sys

from sdctr.log import SdctrError, error

NETWORK_ONLINE = "network-online.target"


def cmd_system_autostart(args: argparse.Namespace) -> int:
    from sdctr.cli.containers import _persist_detached, paths_of, systemd_of
    from sdctr.runtime import lifecycle as containers
    from sdctr.state import read_status

    paths = paths_of(args)
    sd, host = systemd_of(args)
    failed = 0
    due = [spec for spec, active in containers.all_with_state(paths, sd)
           if not spec.declared and active not in containers.RUNNING_STATES
           and spec.restart.starts_at_boot(bool(read_status(paths, spec.id).get("stopped_by_user")))]
    # Two passes: the containers without published ports at once, then, once the host is online,
    # those that publish ports (for others to reach: as declared units, After=network-online).
    # The unit itself is not After=network-online.target, which would hold back every container
    # for the wait-online services (up to 2 minutes on a host with a link down). Not a property
    # of each transient unit: `sdctr run -p` would then pull network-online.target in at any time.
    due.sort(key=lambda spec: bool(spec.ports))
    online = False
    for spec in due:
        if spec.ports and not online:
            online = True
            try:
                sd.start(NETWORK_ONLINE)
            except SdctrError as e:  # started anyway: as a Wants= that failed
                error(f"{NETWORK_ONLINE}: {e}", e.hint)
        try:
            containers.start(paths, _persist_detached(paths, spec), sd, host)
            print(spec.name)
        except SdctrError as e:  # one container that cannot start keeps none of the others down
            error(f"container {spec.name}: {e}", e.hint)
            failed += 1
    return 1 if failed else 0


def cmd_system_setup(args: argparse.Namespace) -> int:
    """What containers need of the host, made before any starts (sdctr-setup.service): the
    default storage driver's directories and kernel module, the default bridge and its NAT
    table. Each container's own hooks make the same when they find it missing (a host where the
    unit is not enabled, a bridge someone deleted), so this is ordering, not a requirement: the
    first container of a boot no longer makes them while others wait on the network's lock.
    Idempotent; prints what it made, nothing where all was there."""
    from sdctr.cli.containers import paths_of
    from sdctr.net import setup as net
    from sdctr.storage import drivers

    paths = paths_of(args)
    made = drivers.driver(drivers.DEFAULT, paths).setup()
    if not args.no_network:
        try:
            net.require_tools()
        except SdctrError as e:  # a host of --network none/host containers: no failed unit at boot
            print(f"sdctr: no bridge network made: {e}", file=sys.stderr)
        else:
            made += net.bring_up(paths)
    for what in made:
        print(f"made {what}")
    return 0
