"""setup.cfg's requirement floors are what RHEL ships: the RPM's Requires (python3-jinja2, from
setup.cfg through %pyproject_buildrequires) is met by RHEL 9's AppStream only if sdctr runs with its
jinja2 2.11.3. The unit tests that render the unit templates (the generator, the skeleton and its
jinja2 fallback, the declared containers' units) run in a venv with RHEL 9's jinja2 and markupsafe
(helpers/el_libraries.py)."""

from __future__ import annotations

import configparser
import os
import subprocess
from pathlib import Path

import pytest
from helpers import REPO
from helpers.el_libraries import EL9_JINJA2, EL9_MARKUPSAFE, el_jinja2_venv

pytestmark = pytest.mark.host

# every unit test that imports jinja2 or renders a unit template through sdctr.systemd
TEMPLATE_TESTS = ("test_generator.py", "test_skeleton.py", "test_template.py", "test_unit_properties.py",
                  "test_declared_yaml.py", "test_declared_deps.py")


def test_setup_cfg_asks_no_newer_jinja2_than_rhel9s() -> None:
    requires = configparser.ConfigParser()
    requires.read(REPO / "setup.cfg")
    lines = [line.strip() for line in requires["options"]["install_requires"].splitlines()]
    assert "Jinja2>=2.11" in lines, lines


@pytest.mark.parametrize("markupsafe", sorted(EL9_MARKUPSAFE))
def test_template_tests_pass_with_rhel9s_jinja2(markupsafe: str, tmp_path: Path) -> None:
    python = el_jinja2_venv(markupsafe, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    versions = subprocess.run([python, "-c", "import jinja2, markupsafe, sdctr; "
                               "print(jinja2.__version__, markupsafe.__version__, sdctr.__file__)"],
                              check=True, capture_output=True, text=True, cwd=REPO, env=env).stdout.split()
    assert versions == [EL9_JINJA2, markupsafe, str(REPO / "sdctr/__init__.py")]
    r = subprocess.run([python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "unit",
                        *(f"tests/unit/{name}" for name in TEMPLATE_TESTS)],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert r.returncode == 0, \
        f"with jinja2 {EL9_JINJA2}, markupsafe {markupsafe}:\n{r.stdout[-6000:]}{r.stderr[-2000:]}"
    assert " passed" in r.stdout.splitlines()[-1], r.stdout[-2000:]
