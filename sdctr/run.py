"""The one door to external commands (mkosi's run.py habit).

Every external program goes through :func:`run`: it echoes ``+ cmd`` under --debug, gives the
child a minimal environment and no stdin unless asked, checks the exit status and turns a
failure into one :class:`~sdctr.log.SdctrError` that names the command and its stderr.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence

from sdctr.log import SdctrError, debug

_MINIMAL_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    capture: bool = True,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    debug("+ " + shlex.join(cmd))
    child_env = dict(_MINIMAL_ENV)
    if env:
        child_env.update(env)
    try:
        proc = subprocess.run(
            list(cmd),
            input=input.decode() if input is not None else None,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            env=child_env,
            text=True,
            timeout=timeout,
        )
    except FileNotFoundError as e:
        raise SdctrError(f"{cmd[0]}: command not found", hint="install the package that provides it") from e
    except subprocess.TimeoutExpired as e:
        raise SdctrError(f"{shlex.join(cmd)} did not finish within {timeout} s") from e
    if check and proc.returncode != 0:
        detail = (proc.stderr or "").strip().splitlines()
        last = f": {detail[-1]}" if detail else ""
        raise SdctrError(f"{shlex.join(cmd)} failed with exit status {proc.returncode}{last}")
    return proc


def popen(cmd: Sequence[str], *, stdin: int | None = subprocess.DEVNULL,
          stderr: int | None = None) -> subprocess.Popen[bytes]:
    """A child whose output is read as it comes (journalctl -f, a decompressor): the same
    echo and minimal environment as run(); the caller reads, waits and judges the status."""
    debug("+ " + shlex.join(cmd))
    try:
        return subprocess.Popen(list(cmd), stdin=stdin, stdout=subprocess.PIPE, stderr=stderr,
                                env=dict(_MINIMAL_ENV))
    except FileNotFoundError as e:
        raise SdctrError(f"{cmd[0]}: command not found", hint="install the package that provides it") from e


def which(name: str) -> str | None:
    for d in _MINIMAL_ENV["PATH"].split(":"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None
