"""setup.cfg's requirement floors are what RHEL ships: the RPM's Requires (python3-jinja2, from
setup.cfg through %pyproject_buildrequires) is met by RHEL 9's AppStream only if sdctr runs with its
jinja2 2.11.3. The unit tests that render the unit templates (the generator, the skeleton and its
jinja2 fallback, the declared containers' units) run in a venv with RHEL 9's jinja2 and markupsafe
(helpers/el_libraries.py); with setup.cfg's floors of PyYAML and httpx too, the unit tests that
read YAML and talk to a registry (through httpx.MockTransport)."""

from __future__ import annotations

import configparser
import os
import subprocess
from pathlib import Path

import pytest
from helpers import REPO
from helpers.el_libraries import EL9_JINJA2, EL9_MARKUPSAFE, FLOOR_HTTPX, FLOOR_PYYAML, el_jinja2_venv

pytestmark = pytest.mark.host

# every unit test that imports jinja2 or renders a unit template through sdctr.systemd
TEMPLATE_TESTS = ("test_generator.py", "test_skeleton.py", "test_template.py", "test_unit_properties.py",
                  "test_declared_yaml.py", "test_declared_deps.py")
# every unit test that parses YAML (options, declared containers) or uses httpx (the registry client)
FLOOR_TESTS = ("test_options.py", "test_health.py", "test_registry_mocked.py", "test_registry_verbs.py",
               "test_image_verbs.py", "test_images.py")


def test_setup_cfg_asks_no_newer_jinja2_than_rhel9s() -> None:
    requires = configparser.ConfigParser()
    requires.read(REPO / "setup.cfg")
    lines = [line.strip() for line in requires["options"]["install_requires"].splitlines()]
    assert "Jinja2>=2.11" in lines, lines


def run_unit_tests(python: str, tests: tuple[str, ...], expect: dict[str, str], *pytest_args: str) -> None:
    """`tests` (tests/unit files) pass when run by `python`, which imports the `expect`ed versions."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    probe = "import importlib, sdctr; print(sdctr.__file__); " + "; ".join(
        f"print(importlib.import_module({name!r}).__version__)" for name in expect)
    seen = subprocess.run([python, "-c", probe], check=True, capture_output=True, text=True, cwd=REPO,
                          env=env).stdout.split()
    assert seen == [str(REPO / "sdctr/__init__.py"), *expect.values()], seen
    r = subprocess.run([python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "unit",
                        *pytest_args, *(f"tests/unit/{name}" for name in tests)],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert r.returncode == 0, f"with {expect}:\n{r.stdout[-6000:]}{r.stderr[-2000:]}"
    assert " passed" in r.stdout.splitlines()[-1], r.stdout[-2000:]


@pytest.mark.parametrize("markupsafe", sorted(EL9_MARKUPSAFE))
def test_template_tests_pass_with_rhel9s_jinja2(markupsafe: str, tmp_path: Path) -> None:
    python = el_jinja2_venv(markupsafe, tmp_path)
    run_unit_tests(python, TEMPLATE_TESTS, {"jinja2": EL9_JINJA2, "markupsafe": markupsafe})


def test_unit_tests_pass_with_setup_cfgs_floors(tmp_path: Path) -> None:
    """RHEL 9's jinja2, and the oldest PyYAML and httpx setup.cfg allows (whether EL9 and EPEL 9
    carry those: packaging/rpm/sdctr.spec's comment on Requires)."""
    python = el_jinja2_venv("1.1.1", tmp_path, floors=True)
    expect = {"jinja2": EL9_JINJA2, "markupsafe": "1.1.1", "yaml": FLOOR_PYYAML, **dict(FLOOR_HTTPX[:2])}
    # these two call yaml.CSafeLoader themselves: only PyYAML's C module (libyaml's, which RHEL's
    # python3-pyyaml has) makes it, and the pure-Python PyYAML here has none; sdctr's own parsing
    # falls back to SafeLoader, and runs so here
    pure_python = "not test_quick_construction_is_pyyamls and not test_an_unhashable_key_is_pyyamls_error"
    run_unit_tests(python, TEMPLATE_TESTS + FLOOR_TESTS, expect, "-k", pure_python)
