"""The wheel (and so the RPM, whose %pyproject_install installs the wheel's files) carries every
module of every subpackage and the unit's shell scripts (`packages = ["sdctr"]` alone once would
have shipped a package without its stages), the generator's unit templates, and as the wheel's
data (setup.py) the man pages, the bash and zsh completion and the generator of declared
containers. The sdist builds the same wheel; `twine check --strict` passes on both; `pip install .`
puts the data under its prefix.

The RPM is built on RHEL 9 with its python3-setuptools 53.0.0 and on RHEL 8 with python39-setuptools
50.3.2, which ignore pyproject.toml's [project] table (setuptools < 61: they built a package named
UNKNOWN, 0.0.0, without dependencies or the console script): the metadata is in setup.cfg, and the
host tier builds the wheel with those setuptools and compares it with today's."""

from __future__ import annotations

import argparse
import configparser
import email
import email.message
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import pytest
from helpers.el_setuptools import EL_SETUPTOOLS, EL_WHEEL, el_venv
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
# what a build reads: the package, its metadata (setup.cfg), the backend (pyproject.toml), the
# wheel's data (setup.py: packaging/manpage.py, which describes packaging/rpm/sdctr.yaml; units/),
# the sdist's list (MANIFEST.in), the README
SOURCES = ("sdctr", "packaging", "units", "pyproject.toml", "setup.cfg", "setup.py", "MANIFEST.in",
           "README.md")


def source_copy(where: Path) -> Path:
    """The checkout's build inputs, copied: the build's build/ and egg-info stay out of the checkout."""
    src = where / "src"
    for f in SOURCES:
        if (REPO / f).is_dir():
            shutil.copytree(REPO / f, src / f, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / f, src / f)
    return src


def build_wheel(src: Path, out: Path, *, python: str | None = None) -> Path:
    """The wheel pip builds from `src` as %pyproject_wheel does: no build isolation (the build root's
    setuptools), nothing fetched; `python`: the interpreter whose setuptools builds it (pip --python)."""
    target = ["--python", python] if python else []
    r = subprocess.run([sys.executable, "-m", "pip", *target, "wheel", "-q", "--no-deps",
                        "--no-build-isolation", "--no-index", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel today's setuptools (this venv's, [test] extra) builds."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    return build_wheel(source_copy(tmp_path), tmp_path / "dist")


def test_the_wheel_holds_every_module_and_script(wheel: Path) -> None:
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("sdctr/")}
    expected = {str(p.relative_to(REPO)) for p in (REPO / "sdctr").rglob("*")
                if p.suffix in (".py", ".sh", ".j2") and "__pycache__" not in p.parts}
    assert expected - shipped == set()
    assert {"sdctr/stop.sh", "sdctr/poststop.sh", "sdctr/main.py"} <= shipped  # the probe sees files
    # the generator of declared containers renders these: a wheel without them fails at boot
    assert {"sdctr/systemd/templates/container.service.j2",
            "sdctr/systemd/templates/invalid.service.j2",
            "sdctr/systemd/templates/errors.service.j2"} <= shipped
    assert any(n.endswith(".dist-info/entry_points.txt") for n in zipfile.ZipFile(wheel).namelist())


def top_verbs() -> list[str]:
    """The parser's own verbs by their first name (an alias names the same parser)."""
    from sdctr.cli.parser import build_parser

    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    seen: dict[int, str] = {}
    for name, sub in action.choices.items():
        seen.setdefault(id(sub), name)
    return list(seen.values())


def expected_data() -> set[str]:
    """What the wheel's data holds, under the prefix pip installs it to (setup.py)."""
    return ({"share/man/man1/sdctr.1", "share/man/man5/sdctr.yaml.5", "share/man/man5/sdctr-containers.5",
             "share/bash-completion/completions/sdctr", "share/zsh/site-functions/_sdctr",
             "lib/systemd/system-generators/sdctr-generator"}
            | {f"share/man/man1/sdctr-{verb}.1" for verb in top_verbs()})


def test_the_wheels_data_is_the_man_pages_the_completion_and_the_generator(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    prefix = f"sdctr-{metadata(wheel)['Version']}.data/data/"
    data = {i.filename[len(prefix):]: i for i in archive.infolist() if i.filename.startswith(prefix)}
    assert set(data) == expected_data(), "the wheel's data differs from setup.py's list"
    assert not [n for n in archive.namelist() if ".data/" in n and not n.startswith(prefix)]
    generator = data["lib/systemd/system-generators/sdctr-generator"]
    assert generator.external_attr >> 16 & 0o777 == 0o755, "systemd runs only an executable generator"
    assert archive.read(generator) == (REPO / "units/system-generators/sdctr-generator").read_bytes()
    page = archive.read(prefix + "share/man/man1/sdctr-run.1").decode()
    assert page.startswith(".TH SDCTR-RUN 1 ") and r"\-\-memory" in page
    assert "complete -o default -F _sdctr sdctr" in archive.read(
        prefix + "share/bash-completion/completions/sdctr").decode()
    assert archive.read(prefix + "share/zsh/site-functions/_sdctr").decode().startswith("#compdef sdctr")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist setuptools' PEP 517 backend builds (what `python -m build --sdist` calls)."""
    tmp_path = tmp_path_factory.mktemp("sdist")
    src = source_copy(tmp_path)
    out = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
                        "print(b.build_sdist(sys.argv[1]))", str(out)], cwd=src, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return out / r.stdout.split()[-1]


def test_the_sdist_builds_the_same_wheel(sdist: Path, wheel: Path, tmp_path: Path) -> None:
    with tarfile.open(sdist) as tar:
        # our own sdist; the data filter where this Python has it (3.11.4 and later)
        tar.extractall(tmp_path, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (src,) = tmp_path.glob("sdctr-*")
    for f in ("setup.py", "MANIFEST.in", "packaging/manpage.py", "packaging/rpm/sdctr.yaml",
              "units/system-generators/sdctr-generator"):
        assert (src / f).is_file(), f"the sdist lacks {f}"
    from_sdist = build_wheel(src, tmp_path / "dist")
    names = [set(zipfile.ZipFile(w).namelist()) for w in (from_sdist, wheel)]
    assert names[0] == names[1], names[0] ^ names[1]


def test_twine_check_passes_on_the_sdist_and_the_wheel(sdist: Path, wheel: Path) -> None:
    """What PyPI's upload checks (the long description renders, the metadata is complete)."""
    twine = Path(sys.executable).with_name("twine")
    if not twine.exists():
        pytest.fail("twine is missing: pip install -e '.[test]'")
    r = subprocess.run([str(twine), "check", "--strict", str(sdist), str(wheel)], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASSED") == 2, r.stdout


def test_pip_install_puts_the_command_and_the_data_under_its_prefix(tmp_path: Path) -> None:
    """`pip install .` (here under --prefix; as root without a venv: /usr/local, where man, bash,
    zsh and systemd look too)."""
    src = source_copy(tmp_path)
    prefix = tmp_path / "prefix"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--no-index", "--no-warn-script-location", "--prefix", str(prefix), "."], cwd=src,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    installed = {str(p.relative_to(prefix)) for p in prefix.rglob("*") if p.is_file()}
    assert expected_data() <= installed, expected_data() - installed
    assert os.access(prefix / "bin/sdctr", os.X_OK)
    assert os.access(prefix / "lib/systemd/system-generators/sdctr-generator", os.X_OK)


def test_the_metadata_is_what_twine_check_reads(wheel: Path) -> None:
    """The fields twine check reads, named (test_twine_check_passes_on_the_sdist_and_the_wheel runs
it): the long description is the README, with a content type PyPI renders, and the core fields."""
    archive = zipfile.ZipFile(wheel)
    (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    meta = email.message_from_bytes(archive.read(name))
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload(decode=True).decode().strip() == (REPO / "README.md").read_text().strip()
    assert meta["Name"] == "sdctr" and meta["Version"] and meta["Summary"]
    assert meta["Requires-Python"] == ">=3.9"


# --- The wheel RHEL's setuptools build (host tier: PyPI, and the cache under /var/cache) ---------
# (helpers/el_setuptools.py: which setuptools and wheel, fetched and cached how)


class ElBuild(NamedTuple):
    setuptools: str
    python: str  # a venv's, with that setuptools and EL_WHEEL, nothing else
    src: Path
    wheel: Path


@pytest.fixture(scope="module", params=sorted(EL_SETUPTOOLS), ids=lambda v: f"setuptools-{v}")
def el_build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ElBuild:
    version: str = request.param
    tmp = tmp_path_factory.mktemp(f"setuptools-{version}")
    python = el_venv(version, tmp)
    src = source_copy(tmp)
    return ElBuild(version, python, src, build_wheel(src, tmp / "dist", python=python))


def metadata(wheel: Path) -> email.message.Message:
    archive = zipfile.ZipFile(wheel)
    (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(archive.read(name))


def requires_dist(meta: email.message.Message) -> set[tuple[object, ...]]:
    """Each Requires-Dist as what it means, not how a setuptools spells it ("PyYAML (>=5.4)" is
    "PyYAML>=5.4"; "(python_version >= '3.10') and extra == 'test'" is the same marker unbracketed):
    the name, the versions, and where its marker holds (Pythons 3.9 to 3.13, with and without [test])."""
    found = set()
    for line in meta.get_all("Requires-Dist") or []:
        req = Requirement(line)
        where = tuple(req.marker.evaluate({"python_version": py, "extra": extra}) if req.marker else True
                      for py in ("3.9", "3.10", "3.13") for extra in ("", "test"))
        found.add((canonicalize_name(req.name), req.specifier, frozenset(req.extras), where))
    return found


def entry_points(wheel: Path) -> dict[str, dict[str, str]]:
    archive = zipfile.ZipFile(wheel)
    (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(archive.read(name).decode())
    return {section: dict(parser[section]) for section in parser.sections()}


@pytest.mark.host
def test_rhels_setuptools_build_the_wheel_todays_builds(el_build: ElBuild, wheel: Path) -> None:
    old, new = metadata(el_build.wheel), metadata(wheel)
    assert old["Name"] == "sdctr", f"setuptools {el_build.setuptools} built {el_build.wheel.name}"
    for field in ("Name", "Version", "Requires-Python", "Summary", "License", "Description-Content-Type"):
        assert old[field] == new[field], field
    assert set(old.get_all("Provides-Extra") or []) == set(new.get_all("Provides-Extra") or []) == {"test"}
    assert requires_dist(old) == requires_dist(new)
    assert old.get_payload().strip() == new.get_payload().strip()  # the README, PyPI's description
    assert entry_points(el_build.wheel) == entry_points(wheel) == {
        "console_scripts": {"sdctr": "sdctr.main:entry"}}
    # the same files: the package (its scripts and templates), and the dist-info's that matter (the
    # rest of the dist-info, RECORD's checksums and WHEEL's generator, differs by the tools' versions)
    old_files, new_files = (set(zipfile.ZipFile(w).namelist()) for w in (el_build.wheel, wheel))
    package = {n for n in new_files if ".dist-info/" not in n}
    assert {n for n in old_files if ".dist-info/" not in n} == package
    assert {"sdctr/stop.sh", "sdctr/poststop.sh", "sdctr/systemd/templates/container.service.j2"} <= package
    dist_info = {f"sdctr-{new['Version']}.dist-info/{f}" for f in ("METADATA", "entry_points.txt", "RECORD")}
    assert dist_info <= old_files & new_files


@pytest.mark.host
def test_the_build_requirements_are_what_rhel_has(el_build: ElBuild) -> None:
    """What %pyproject_buildrequires asks of the build root before any runtime dependency:
    [build-system] requires, then the backend's get_requires_for_build_wheel (setuptools < 70.1:
    wheel). Every one must hold with RHEL's setuptools and wheel, the only packages in this venv."""
    import tomllib  # Python >= 3.11, as the venv's (the module stays importable on the 3.9 floor)

    build_system = tomllib.loads((el_build.src / "pyproject.toml").read_text())["build-system"]
    # what the venv has installed (its site-packages: not the build's egg-info in the source tree)
    probe = ("import importlib, importlib.metadata, json, sys, sysconfig\n"
             "backend = importlib.import_module(sys.argv[1])\n"
             "asked = sys.argv[2:] + backend.get_requires_for_build_wheel()\n"
             "site = [sysconfig.get_paths()['purelib']]\n"
             "installed = {d.metadata['Name'].lower(): d.version\n"
             "             for d in importlib.metadata.distributions(path=site)}\n"
             "print(json.dumps({'asked': asked, 'installed': installed}))\n")
    r = subprocess.run([el_build.python, "-c", probe, build_system["build-backend"],
                        *build_system["requires"]], cwd=el_build.src, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.splitlines()[-1])
    assert result["installed"] == {"setuptools": el_build.setuptools, "wheel": EL_WHEEL}
    asked = [Requirement(a) for a in result["asked"]]
    assert {canonicalize_name(a.name) for a in asked} == {"setuptools", "wheel"}
    for req in asked:
        have = result["installed"][canonicalize_name(req.name)]
        assert req.specifier.contains(have), f"{req} is not met by RHEL's {req.name} {have}"
