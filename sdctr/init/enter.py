"""`sdctr exec`: a command in a running container, confined as the container's own command is.

Joins the unit's cgroups and the namespaces of the container's PID 1, takes its root, forks
(a PID namespace applies to children), and in the child drops to the container's capabilities,
sets no_new_privs and the container's seccomp filter before exec: an exec'd shell is no more
privileged than the container itself.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from sdctr.log import SdctrError
from sdctr.spec import ContainerSpec, env_mapping, merge_env

# The mount namespace last: after it, /proc paths of the host are no longer ours to open.
NAMESPACES = ("ipc", "uts", "net", "pid", "mnt")


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
    from sdctr import linux
    from sdctr.init import reaper, seccomp
    from sdctr.init import standard as init

    if not command:
        raise SdctrError("exec needs a command", hint="example: sdctr exec web sh")
    spaces = [os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC) for ns in NAMESPACES]
    root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    syscall_filter = seccomp.Filter(spec.capabilities)  # libseccomp is loaded from the host
    join_cgroups(unit)
    for fd in spaces:
        linux.setns(fd)
        os.close(fd)
    os.fchdir(root)
    os.chroot(".")
    os.close(root)
    signal.pthread_sigmask(signal.SIG_BLOCK, reaper.FORWARDED)
    child = os.fork()
    if child == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, reaper.FORWARDED)
        try:
            who = init.resolve_user(user if user is not None else spec.user)
            os.chdir(workdir or spec.workdir or "/")
            environment = merge_env(init.container_env(spec, who), env)
            init.drop_privileges(who, spec.capabilities)
            path = init.resolve_command(command[0], environment)
            linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
            syscall_filter.load()
            os.execve(path, command, env_mapping(environment))
        except SdctrError as e:
            os.write(2, f"sdctr: error: {e}\n".encode())
            os._exit(e.status)
        except OSError as e:
            os.write(2, f"sdctr: error: {init.describe(e)}\n".encode())
            os._exit(126)
    init.forward_signals(child)  # as `docker exec` forwards them
    _, status = os.waitpid(child, 0)
    return reaper.exit_status(status)
