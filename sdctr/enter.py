"""`sdctr exec`: a command in a running container's namespaces and cgroup.

nsenter (util-linux) does the setns dance and the fork into the PID namespace; before it runs,
this process joins the unit's cgroups so the command is accounted and limited with the
container, and the command gets the container's environment, user and working directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sdctr.log import SdctrError
from sdctr.spec import ContainerSpec


def resolve_user(root: Path, user: str) -> tuple[int, int]:
    """uid[:gid] or name[:group] against the container's own /etc/passwd and /etc/group."""
    name, _, group = user.partition(":")

    def lookup(file: str, key: str) -> list[str] | None:
        try:
            for line in (root / "etc" / file).read_text().splitlines():
                fields = line.split(":")
                if fields and fields[0] == key:
                    return fields
        except OSError:
            pass
        return None

    if name.isdigit():
        uid, gid = int(name), int(name)
        entry = None
    else:
        entry = lookup("passwd", name)
        if entry is None:
            raise SdctrError(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(entry[2]), int(entry[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = lookup("group", group)
            if g is None:
                raise SdctrError(f"unable to find group {group}: no matching entries in group file")
            gid = int(g[2])
    elif name.isdigit():
        gid = 0
    return uid, gid


def join_cgroups(unit: dict[str, Any]) -> None:
    cg = unit.get("ControlGroup", "").lstrip("/")
    base = Path("/sys/fs/cgroup")
    for hierarchy in [base, *(p for p in base.iterdir() if p.is_dir())]:
        procs = hierarchy / cg / "cgroup.procs"
        if cg and procs.exists():
            try:
                procs.write_text(str(os.getpid()))
            except OSError:
                pass  # a v2 inner node with controllers takes no processes; its leaf is enough


def exec_in(spec: ContainerSpec, pid: int, unit: dict[str, Any], command: list[str], *,
            env: list[str], workdir: str | None, user: str | None, tty: bool, interactive: bool) -> int:
    if not command:
        raise SdctrError("exec needs a command", hint="example: sdctr exec web sh")
    root = Path(f"/proc/{pid}/root")
    uid, gid = resolve_user(root, user or spec.user or "0")
    from sdctr.spec import merge_env

    environment = merge_env(("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
                            spec.env, (f"HOSTNAME={spec.hostname or spec.short_id}",), env)
    argv = ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-C", "-r",
            f"--wd={workdir or spec.workdir or '/'}", "-S", str(uid), "-G", str(gid), "--",
            "env", "-i", *environment, *command]
    join_cgroups(unit)
    os.execvp("nsenter", argv)
