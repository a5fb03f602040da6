"""`sdctr healthcheck run CONTAINER`, and the health shown by ps (sdctr.init.health)."""

from __future__ import annotations

import argparse

from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.spec import ContainerSpec


def cmd_healthcheck_run(args: argparse.Namespace) -> int:
    """As podman's: the check run now, its result recorded; `healthy` (0) or `unhealthy` (1)."""
    from sdctr.runtime import health
    from sdctr.runtime.lifecycle import RUNNING_STATES, root_args
    from sdctr.state import find
    from sdctr.systemd.manager import Systemd
    from sdctr.systemd.properties import sdctr_argv

    paths = Paths.from_root(args.root)
    spec = find(paths, args.container)
    if Systemd().active_state(spec.unit) not in RUNNING_STATES:
        raise SdctrError(f"container {spec.name} is not running", status=125)
    status = health.run_check(paths, spec, sdctr_argv(root_args(paths)))
    print(status)
    return 0 if status != "unhealthy" else 1


def status_suffix(paths: Paths, spec: ContainerSpec) -> str:
    from sdctr.init import health

    state = health.read(paths, spec.id)
    status = state["Status"] if state else health.STARTING
    return " (health: starting)" if status == health.STARTING else f" ({status})"
