"""sdctr's command line as a test on this machine runs it: this checkout's package (PYTHONPATH,
and the checkout as the working directory) in a child process, optionally under a --root of the
test's own and inside a network namespace. (In a test host, `sdctr` is on the PATH: Machine.exec.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import REPO


def sdctr_argv(*args: str, root: Path | None = None, prefix: Sequence[str] = ()) -> list[str]:
    """`python -m sdctr [--root ROOT] ARGS`, after `prefix` (a command that enters a namespace)."""
    return [*prefix, sys.executable, "-m", "sdctr", *(["--root", str(root)] if root else []), *args]


def sdctr_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with this checkout's sdctr first on the path."""
    return {**os.environ, "PYTHONPATH": str(REPO), **(extra or {})}


def run_sdctr(*args: str, root: Path | None = None, prefix: Sequence[str] = (),
              env: Mapping[str, str] | None = None, input: str | None = None, timeout: float = 120,
              **kw: Any) -> subprocess.CompletedProcess[str]:
    """Runs the CLI to its end; stdout and stderr are captured unless given. The caller checks the
    status. `env` is the whole environment (default: sdctr_env())."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.run(sdctr_argv(*args, root=root, prefix=prefix),
                          env=dict(env) if env is not None else sdctr_env(), cwd=REPO, input=input,
                          text=True, timeout=timeout, **kw)
