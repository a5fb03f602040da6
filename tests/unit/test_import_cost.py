"""The hot paths import only what they use (import time is most of a Python CLI's start-up):
the CLI, `run`, the hooks and the init never pay for image building, YAML, templates, HTTP or
netlink libraries; `--help` never pays for D-Bus."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("tarfile", "gzip", "yaml", "jinja2", "httpx", "pyroute2", "asyncio", "email", "http.client")


def imported_by(code: str) -> set[str]:
    r = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                       capture_output=True, text=True, check=True)
    return set(r.stdout.split())


@pytest.mark.parametrize("modules", [
    "sdctr.cli", "sdctr.verbs, sdctr.containers, sdctr.systemd, sdctr.attach",
    "sdctr.hooks, sdctr.images, sdctr.storage", "sdctr.init", "sdctr.registry",
    "sdctr.auth, sdctr.config, sdctr.progress, sdctr.search",
])
def test_hot_paths_import_nothing_heavy(modules: str) -> None:
    loaded = imported_by(f"import {modules}")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


# what `run` and the init do without, each a few milliseconds of every container start:
# typing; tempfile with shutil, bz2 and lzma; dataclasses with inspect; hashlib (OpenSSL);
# subprocess with selectors; socket; threading; random
NOT_ON_THE_RUN_PATH = {"typing", "tempfile", "shutil", "lzma", "bz2", "dataclasses", "inspect", "hashlib",
                       "subprocess", "socket", "threading", "random"}


def test_run_path_skips_what_only_other_verbs_need() -> None:
    loaded = imported_by("from sdctr.cli import build_parser; build_parser('run').parse_args(['run', 'x']);"
                         "import sdctr.main, sdctr.verbs, sdctr.containers, sdctr.systemd, "
                         "sdctr.attach, sdctr.images, sdctr.storage, sdctr.hooks")
    assert not loaded & NOT_ON_THE_RUN_PATH, sorted(loaded & NOT_ON_THE_RUN_PATH)


def test_init_path_skips_them_too() -> None:
    loaded = imported_by("import sdctr.main, sdctr.init, sdctr.state")
    assert not loaded & NOT_ON_THE_RUN_PATH, sorted(loaded & NOT_ON_THE_RUN_PATH)


def test_help_does_not_load_dbus() -> None:
    loaded = imported_by("from sdctr.cli import build_parser; build_parser().format_help()")
    assert "sdctr.sdbus" not in loaded
