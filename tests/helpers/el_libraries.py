"""The Python libraries RHEL's RPM of sdctr runs with, in throwaway venvs: RHEL 9's AppStream has
python3-jinja2 2.11.3, and jinja2 2.11 imports markupsafe's soft_unicode, which MarkupSafe 2.1
removed: RHEL 9's python3-markupsafe is 1.1.1 (as far as can be known from here, where only PyPI is
reachable); 2.0.1 is the newest 2.11 runs with, so both are tried.

Jinja2's wheel and MarkupSafe's sdist come from PyPI once, sha256-checked on every use
(el_setuptools.cached). MarkupSafe has no wheel for Python 3.11 in those versions: its sdist is not
built (no compiler, no build backend); its pure-Python package (src/markupsafe/*.py) is copied into
the venv. Without the C module markupsafe imports its _native twin, the same functions in Python
(RHEL's RPM has the C module: what jinja2 sees of markupsafe is the same).

Everything else (PyYAML, httpx, pytest) is this machine's: the venv reads the site-packages of the
Python running the tests through a .pth file, which Python puts on sys.path AFTER the venv's own
site-packages, so the venv's jinja2 and markupsafe win over the newer ones there."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

from .el_setuptools import cached

EL9_JINJA2 = "2.11.3"
EL9_MARKUPSAFE = {"1.1.1": "RHEL 9's python3-markupsafe", "2.0.1": "the newest jinja2 2.11 runs with"}
# setup.cfg's floors of PyYAML and httpx, and what httpx 0.23.0 requires (httpcore 0.15 wants h11
# < 0.13 and anyio 3, which needs sniffio; httpx < 0.23.1 wants rfc3986 < 2): this machine's are
# all newer, or missing
FLOOR_PYYAML = "5.4.1"
FLOOR_HTTPX = (("httpx", "0.23.0"), ("httpcore", "0.15.0"), ("h11", "0.12.0"), ("anyio", "3.7.1"),
               ("rfc3986", "1.5.0"), ("sniffio", "1.3.1"))


def el_jinja2_venv(markupsafe: str, where: Path, *, floors: bool = False) -> str:
    """A venv in `where` with jinja2==EL9_JINJA2 and markupsafe==`markupsafe` of its own (and,
    if `floors`, PyYAML==FLOOR_PYYAML and FLOOR_HTTPX), and this machine's other packages behind
    them; its python's path."""
    wheels = [cached("Jinja2", EL9_JINJA2, where)]
    if floors:
        wheels += [cached(name, version, where) for name, version in FLOOR_HTTPX]
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = str(venv / "bin/python")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-index",
                    "--no-deps", *map(str, wheels)], check=True, capture_output=True, timeout=300)
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    _copy_package(cached("MarkupSafe", markupsafe, where), f"MarkupSafe-{markupsafe}/src/markupsafe/",
                  site / "markupsafe")
    if floors:  # without its C module, yaml has no CSafeLoader: options.py falls back to SafeLoader
        _copy_package(cached("PyYAML", FLOOR_PYYAML, where), f"PyYAML-{FLOOR_PYYAML}/lib3/yaml/",
                      site / "yaml")
    (site / "zz-this-machine.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _copy_package(sdist: Path, prefix: str, package: Path) -> None:
    """The .py files of the sdist's directory `prefix`, copied into `package`: the pure-Python
    package, without building the sdist."""
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(prefix)
                   and m.name.endswith(".py") and "/" not in m.name[len(prefix):]]
        assert members, f"{sdist.name}: no {prefix}*.py"
        package.mkdir()
        for member in members:
            source = tar.extractfile(member)
            assert source is not None
            (package / member.name[len(prefix):]).write_bytes(source.read())
