"""`sdctr healthcheck run`: a container's health check run now, by hand, through `sdctr exec`,
its result added to the state its unit's helper keeps (sdctr.init.health, which runs the
checks and tells systemd)."""

from __future__ import annotations

import time

from sdctr.init.health import record, result_of
from sdctr.log import SdctrError, debug
from sdctr.paths import Paths
from sdctr.spec import ContainerSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def run_check(paths: Paths, spec: ContainerSpec, sdctr: Sequence[str]) -> str:
    """One check: the command in the container, its result recorded; the status after it."""
    import subprocess

    if not spec.health_cmd:
        raise SdctrError(f"container {spec.name} has no health check",
                         hint="give one with --health-cmd, or healthcheck: in its YAML file")
    started = time.time()
    cmd = [*sdctr, "exec", spec.id, *spec.health_cmd]
    debug("+ " + " ".join(cmd))
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=spec.health_timeout)
        code, output = proc.returncode, proc.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        code = -1
        output = f"Health check exceeded timeout ({spec.health_timeout:g}s)\n" + \
            (e.output or b"").decode(errors="replace")
    return str(record(paths, spec, result_of(started, code, output), code == 0, started)["Status"])
