"""The unit's ExecStartPre and ExecStopPost: everything a container needs around its init.

    prestart  <id>   the rootfs snapshot prepared and mounted at <run>/<id>/rootfs (for an
                     ephemeral container; others mount it with the driver's own command)
    stop      <id>   for units made before ExecStop became sdctr/stop.sh: that script
    poststop  <id>   the exit status recorded (systemd hands it over in $EXIT_CODE/$EXIT_STATUS),
                     the rootfs unmounted, and for --rm the snapshot and record removed

Both run on every start and stop, `systemctl restart ctr-<id>` included, so systemd alone can
restart a container. They must be idempotent: a hook killed halfway is simply run again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from sdctr.log import debug
from sdctr.paths import Paths
from sdctr.state import find_by_id, read_status, write_json_atomic, write_status
from sdctr.systemd.manager import UNIT_DIR

TYPE_CHECKING = False  # typing costs ~3 ms to import
if TYPE_CHECKING:
    from sdctr.spec import ContainerSpec


def prestart(paths: Paths, cid: str) -> int:
    from sdctr.image import store as images
    from sdctr.storage import overlay as storage

    spec = find_by_id(paths, cid)
    image = images.resolve(paths, spec.image_id)
    driver = storage.driver(paths)
    if spec.ephemeral:
        driver.reset(cid)
    driver.prepare(cid, image)
    driver.mount(cid, image, paths.rootfs(cid))
    return 0

def stop(paths: Paths, cid: str) -> int:
    """ExecStop of units made before it became a script: the script (sdctr/stop.sh)."""
    from sdctr.paths import STOP_SCRIPT

    os.execv("/bin/sh", ["/bin/sh", STOP_SCRIPT])


def poststop(paths: Paths, cid: str) -> int:
    from sdctr.storage import overlay as storage

    env = os.environ
    spec = find_by_id(paths, cid)
    status = read_status(paths, cid)
    status.update(running=False, finished_at=time.time(), result=env.get("SERVICE_RESULT", ""),
                  exit_code=exit_code(env.get("EXIT_CODE", ""), env.get("EXIT_STATUS", "")),
                  oom_killed=env.get("SERVICE_RESULT") == "oom-kill" or oom_killed_here())
    if spec.remove:
        remove_container(paths, spec)  # unmounts first
    else:
        driver = storage.driver(paths)
        driver.unmount(paths.rootfs(cid))
        write_status(paths, cid, status)
        if spec.ephemeral:
            driver.reset(cid)
    # last, as poststop.sh does: the attached `sdctr run` that waits for this file (and removes
    # it) returns once everything else is done
    if spec.attached:
        write_json_atomic(exit_file(paths, cid), status)
    return 0


# mountinfo escapes these in paths (octal); the shell's check for mounts would then miss them
_ESCAPED_IN_MOUNTINFO = frozenset(" \t\n\\")


def poststop_command(paths: Paths, spec: ContainerSpec) -> list[str] | None:
    """poststop() for a --rm container as a shell script the unit runs without Python (see
    poststop.sh), the hook's own argv to be appended for the cases it hands over; None where the
    script cannot do the hook's work (a kept record, a snapshot that is more than a directory)."""
    from sdctr.storage import overlay as storage

    snapshot = storage.driver(paths).snapshot_dir(spec.id) if spec.remove else None
    if snapshot is None:
        return None
    # as /proc/self/mountinfo shows them, so that the script's check for mounts matches
    args = [os.path.realpath(p) for p in (paths.rootfs(spec.id), snapshot, paths.run_dir(spec.id),
                                          UNIT_DIR / spec.unit, paths.container_dir(spec.id))]
    if any(set(a) & _ESCAPED_IN_MOUNTINFO for a in args):
        return None
    exit_to = str(exit_file(paths, spec.id)) if spec.attached else ""
    from sdctr.paths import POSTSTOP_SCRIPT as script
    return ["/bin/sh", script, args[0], exit_to, *args[1:]]


def remove_container(paths: Paths, spec: ContainerSpec) -> None:
    """Snapshot, runtime directory and record; the record last, so a crash leaves it findable."""
    import shutil

    from sdctr.storage import overlay as storage

    driver = storage.driver(paths)
    driver.unmount(paths.rootfs(spec.id))
    driver.remove(spec.id)
    # a unit file written for an old systemd goes too; it stays loaded until systemd's next
    # reload, inactive, and is collected then
    with contextlib.suppress(FileNotFoundError):
        (UNIT_DIR / spec.unit).unlink()
    run_dir = paths.run_dir(spec.id)
    if run_dir.exists():
        shutil.rmtree(run_dir) if not _has_mount_under(run_dir) else debug(f"{run_dir} busy, kept")
    shutil.rmtree(paths.container_dir(spec.id), ignore_errors=True)


def exit_file(paths: Paths, cid: str) -> Path:
    return paths.run / f"{cid}.exit.json"


def exit_code(code: str, status: str) -> int | None:
    """systemd's $EXIT_CODE/$EXIT_STATUS as a shell would report them: 128+N for signal N."""
    if code == "exited":
        return int(status) if status.isdigit() else None
    if code in ("killed", "dumped"):
        try:
            return 128 + int(signal.Signals[f"SIG{status}"])
        except KeyError:
            return 128 + int(status) if status.isdigit() else None
    return None


def oom_killed_here() -> bool:
    """ExecStopPost runs in the unit's own cgroup: its OOM counter tells whether the kernel
    killed something there (on cgroup v1 systemd reports a plain SIGKILL)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            candidates = [Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.oom_control"]
        elif controllers == "":
            candidates = [Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.events",
                          Path("/sys/fs/cgroup/unified") / path.lstrip("/") / "memory.events"]
        else:
            continue
        for f in candidates:
            count = _oom_kill_count(f)
            if count:
                return True
    return False


def _oom_kill_count(path: Path) -> int:
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except OSError:
        pass
    return 0


def _has_mount_under(path: Path) -> bool:
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].startswith(prefix) for line in f)
