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


# a case per subpackage: every module of it, imported together
SUBPACKAGES = {
    "top": "sdctr.main, sdctr.log, sdctr.record, sdctr.paths, sdctr.spec, sdctr.options, sdctr.state, "
           "sdctr.cgroups, "
           "sdctr.config, sdctr.external, sdctr.linux, sdctr.caps",
    "cli": "sdctr.cli.parser, sdctr.cli.containers, sdctr.cli.images, sdctr.cli.output, sdctr.cli.attach",
    "oci": "sdctr.oci.digest, sdctr.oci.layers",
    "image": "sdctr.image.store, sdctr.image.registry, sdctr.image.auth, sdctr.image.search, "
             "sdctr.image.progress, sdctr.image.archive",
    "storage": "sdctr.storage.snapshotter, sdctr.storage.overlay, sdctr.storage.mountinfo",
    "systemd": "sdctr.systemd.bus, sdctr.systemd.manager, sdctr.systemd.properties",
    "runtime": "sdctr.runtime.lifecycle, sdctr.runtime.resolve, sdctr.runtime.hooks, sdctr.runtime.logs",
    "init": "sdctr.init.standard, sdctr.init.enter, sdctr.init.reaper, sdctr.init.seccomp, sdctr.init.health",
}

# the tar reader is oci.layers' whole job, and HTTP is image.registry's: they are imported only
# by the verbs that unpack or pull, which the run and init cases below check
HEAVY_FOR = {"oci": set(HEAVY) - {"tarfile"},
             "image": set(HEAVY) - {"tarfile", "gzip", "httpx", "email", "http.client"}}


@pytest.mark.parametrize("subpackage", sorted(SUBPACKAGES))
def test_no_subpackage_imports_anything_heavy_at_load(subpackage: str) -> None:
    heavy = HEAVY_FOR.get(subpackage, set(HEAVY))
    loaded = imported_by(f"import {SUBPACKAGES[subpackage]}")
    assert not loaded & heavy, sorted(loaded & heavy)


@pytest.mark.parametrize("modules", [
    "sdctr.cli.parser",
    "sdctr.cli.containers, sdctr.runtime.lifecycle, sdctr.systemd.manager, sdctr.cli.attach",
    "sdctr.cli.images, sdctr.cli.output",
    "sdctr.runtime.hooks, sdctr.image.store, sdctr.storage.snapshotter, sdctr.storage.overlay, "
    "sdctr.storage.mountinfo", "sdctr.init.standard",
    "sdctr.image.registry", "sdctr.image.auth, sdctr.config, sdctr.image.progress, sdctr.image.search",
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
    loaded = imported_by("from sdctr.cli.parser import build_parser;"
                         "from sdctr.options import run_options;"
                         "run_options(vars(build_parser('run').parse_args("
                         "['run', '-m', '64m', '--cap-add', 'NET_ADMIN', '-v', '/a:/b', 'x'])));"
                         "import sdctr.main, sdctr.cli.containers, sdctr.runtime.lifecycle, "
                         "sdctr.runtime.resolve, sdctr.options, sdctr.systemd.manager, "
                         "sdctr.cli.attach, sdctr.image.store, sdctr.storage.snapshotter, "
                         "sdctr.storage.overlay, sdctr.storage.mountinfo, sdctr.runtime.hooks")
    assert not loaded & NOT_ON_THE_RUN_PATH, sorted(loaded & NOT_ON_THE_RUN_PATH)


def test_init_path_skips_them_too() -> None:
    loaded = imported_by("import sdctr.main, sdctr.init.standard, sdctr.state")
    assert not loaded & NOT_ON_THE_RUN_PATH, sorted(loaded & NOT_ON_THE_RUN_PATH)


def test_help_does_not_load_dbus() -> None:
    loaded = imported_by("from sdctr.cli.parser import build_parser; build_parser().format_help()")
    assert "sdctr.systemd.bus" not in loaded
    assert "sdctr.cli.parser" in loaded  # the probe itself ran
