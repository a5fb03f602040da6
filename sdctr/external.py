"""The one door to external commands (mkosi's run.py habit).

Every external program goes through :func:`run`: it echoes ``+ cmd`` under --debug, gives the
child a minimal environment and no stdin, checks the exit status and turns a
failure into one :class:`~sdctr.log.SdctrError` that names the command and its stderr.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from sdctr.log import SdctrError, debug

TYPE_CHECKING = False  # typing costs ~3 ms to import, and run needs none of it
if TYPE_CHECKING:
    import subprocess

_MINIMAL_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
_DEVNULL = -3  # subprocess.DEVNULL, whose module (with selectors) is ~3 ms that `sdctr run` does without


def run(cmd: Sequence[str], *, check: bool = True, capture: bool = True,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`input`, if given, is the child's stdin (`ip -batch -`, `nft -f -`), echoed under --debug."""
    import subprocess

    debug("+ " + shlex.join(cmd) + ("" if input is None else " <<EOF\n" + input + "EOF"))
    try:
        proc = subprocess.run(list(cmd), stdin=subprocess.DEVNULL if input is None else None, input=input,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None,
                              env=dict(_MINIMAL_ENV), text=True)
    except FileNotFoundError as e:
        raise SdctrError(f"{cmd[0]}: command not found", hint="install the package that provides it") from e
    if check and proc.returncode != 0:
        detail = (proc.stderr or "").strip().splitlines()
        last = f": {detail[-1]}" if detail else ""
        raise SdctrError(f"{shlex.join(cmd)} failed with exit status {proc.returncode}{last}")
    return proc


def popen(cmd: Sequence[str], *, stdin: int | None = _DEVNULL,
          stderr: int | None = None) -> subprocess.Popen[bytes]:
    """A child whose output is read as it comes (journalctl -f, a decompressor): the same
    echo and minimal environment as run(); the caller reads, waits and judges the status."""
    import subprocess

    debug("+ " + shlex.join(cmd))
    try:
        return subprocess.Popen(list(cmd), stdin=stdin, stdout=subprocess.PIPE, stderr=stderr,
                                env=dict(_MINIMAL_ENV))
    except FileNotFoundError as e:
        raise SdctrError(f"{cmd[0]}: command not found", hint="install the package that provides it") from e
