"""The setuptools RHEL builds sdctr's RPM with, in throwaway venvs: RHEL 9's python3-setuptools is
53.0.0, RHEL 8's python39-setuptools 50.3.2, and the wheel package their bdist_wheel comes from
(setuptools < 70.1 has none of its own) is RHEL 9's python3-wheel, 0.36.2. Both setuptools run on
this machine's Python 3.11 (40.9, the floor pyproject.toml declares, does not: that one is read
from its source, not built with).

Their wheels come from PyPI once, into $SDCTR_TEST_CACHE/wheels (default
/var/cache/sdctr-tests/wheels, beside the test hosts' roots and the VM image), and are checked
against PyPI's sha256 on every use."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import skip_or_fail

EL_SETUPTOOLS = {"53.0.0": "RHEL 9's python3-setuptools", "50.3.2": "RHEL 8's python39-setuptools"}
EL_WHEEL = "0.36.2"
SHA256 = {
    "setuptools-53.0.0-py3-none-any.whl": "0e86620d658c5ca87a71a283bd308fcaeb4c33e17792ef6f081aec17c171347f",
    "setuptools-50.3.2-py3-none-any.whl": "2c242a0856fbad7efbe560df4a7add9324f340cf48df43651e9604924466794a",
    "wheel-0.36.2-py2.py3-none-any.whl": "78b5b185f0e5763c26ca1e324373aadd49182ca90e825f7853f4b2509215dc0e",
    # RHEL 9's python3-jinja2 and python3-markupsafe (helpers/el_libraries.py); MarkupSafe 1.1.1
    # and 2.0.1 have no wheel for Python 3.11 on PyPI, only their sdists
    "Jinja2-2.11.3-py2.py3-none-any.whl": "03e47ad063331dd6a3f04a43eddca8a966a26ba0c5b7207a9a9e4e08f1b29419",
    "MarkupSafe-1.1.1.tar.gz": "29872e92839765e546828bb7754a68c418d927cd064fd4708fab9fe9c8bb116b",
    "MarkupSafe-2.0.1.tar.gz": "594c67807fb16238b30c44bdf74f36c02cdf22d1c8cda91ef8a0ed8dabf5620a",
    # setup.cfg's floors of PyYAML and httpx (with what httpx 0.23.0 needs): helpers/el_libraries.py;
    # PyYAML 5.4.1 has no wheel for Python 3.11, only its sdist
    "PyYAML-5.4.1.tar.gz": "607774cbba28732bfa802b54baa7484215f530991055bb562efbed5b2f20a45e",
    "httpx-0.23.0-py3-none-any.whl": "42974f577483e1e932c3cdc3cd2303e883cbfba17fe228b0f63589764d7b9c4b",
    "httpcore-0.15.0-py3-none-any.whl": "1105b8b73c025f23ff7c36468e4432226cbb959176eab66864b8e31c4ee27fa6",
    "h11-0.12.0-py3-none-any.whl": "36a3cb8c0a032f56e2da7084577878a035d3b61d104230d4bd49c0c6b555a9c6",
    "anyio-3.7.1-py3-none-any.whl": "91dee416e570e92c64041bd18b900d1d6fa78dff7048769ce5ac5ddad004fbb5",
    "rfc3986-1.5.0-py2.py3-none-any.whl": "a86d6e1f5b1dc238b218b012df0aa79409667bb209e58da56d0b94704e712a97",
    "sniffio-1.3.1-py3-none-any.whl": "2f6da418d1f1e0fddd844478f41680e794e6051915791a034ff65e5f100525a2",
}
CACHE = Path(os.environ.get("SDCTR_TEST_CACHE", "/var/cache/sdctr-tests")) / "wheels"


def cached(name: str, version: str, tmp: Path) -> Path:
    """PyPI's file of name==version that SHA256 names (its wheel, or its sdist where SHA256 names a
    .tar.gz), from the cache; downloaded into it (pip download) the first time."""
    wanted = [f for f in SHA256 if f.lower().startswith((f"{name}-{version}-".lower(),
                                                          f"{name}-{version}.tar.gz".lower()))]
    assert len(wanted) == 1, f"no checksum for {name} {version}"
    path = CACHE / wanted[0]
    if not path.exists():
        # an sdist is only downloaded, never built here: pip reads its metadata with this
        # machine's setuptools (an isolated build env would fetch today's, and PyYAML 5.4.1's
        # setup.py fails with today's Cython)
        binary = (["--no-binary", ":all:", "--no-build-isolation"] if path.name.endswith(".tar.gz")
                  else ["--only-binary", ":all:"])
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *binary,
                            "-d", str(tmp), f"{name}=={version}"],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0 or not (tmp / path.name).exists():
            skip_or_fail(f"cannot download {name} {version} from PyPI:\n{r.stderr[-2000:]}")
        CACHE.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        shutil.copy(tmp / path.name, part)
        part.rename(path)  # a download cut short is never taken for the wheel
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256[path.name], f"{path}: not PyPI's file"
    return path


def el_venv(setuptools: str, where: Path, *, pip: bool = False) -> str:
    """A venv in `where` with setuptools==`setuptools` and wheel==EL_WHEEL, and pip if asked (a
    build that runs `python -m pip wheel`, as packaging/rpm/build does); its python's path."""
    wheels = [cached("setuptools", setuptools, where), cached("wheel", EL_WHEEL, where)]
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", *([] if pip else ["--without-pip"]), str(venv)],
                   check=True, timeout=300)
    python = str(venv / "bin/python")
    # the venv's own pip replaces the setuptools ensurepip installed; without pip, this venv's pip
    # installs into it (pip --python)
    installer = [python, "-m", "pip"] if pip else [sys.executable, "-m", "pip", "--python", python]
    subprocess.run([*installer, "install", "-q", "--no-index", "--no-deps", *map(str, wheels)],
                   check=True, capture_output=True, timeout=300)
    return python
