"""The generator's precompiled template: the same text as jinja2's, jinja2 left unimported at
boot, compiled.py never stale, and an edited template rendered by jinja2 again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from sdctr.options import read_declared
from sdctr.systemd import generator, skeleton
from sdctr.systemd.properties import Host

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"


def test_compiled_py_is_made_from_the_templates_as_they_are() -> None:
    current = (REPO / "sdctr/systemd/compiled.py").read_text()
    assert current == skeleton.compiled_text(generator.TEMPLATES), \
        "stale: run `python -m sdctr.systemd.skeleton` and commit sdctr/systemd/compiled.py"


@pytest.mark.parametrize("fixture", ["declared-web.container", None])
def test_the_skeleton_renders_what_jinja2_renders(tmp_path: Path, fixture: str | None) -> None:
    path = tmp_path / "web.yaml"
    path.write_text((GOLDEN / fixture).read_text() if fixture else "image: busybox\n")
    options = read_declared(str(path))
    fast = generator.Renderer(Host(1, 0), ["/usr/bin/sdctr"])
    assert fast._skeleton is not None
    slow = generator.Renderer(Host(1, 0), ["/usr/bin/sdctr"])
    slow._skeleton = None
    assert fast.unit(options, str(path)) == slow.unit(options, str(path))


def test_an_edited_template_is_rendered_by_jinja2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edited = (Path(generator.TEMPLATES) / "container.service.j2").read_text() + "# local edit\n"
    (tmp_path / "container.service.j2").write_text(edited)
    monkeypatch.setattr(generator, "TEMPLATES", str(tmp_path))
    renderer = generator.Renderer(Host(1, 0), ["/usr/bin/sdctr"])
    assert renderer._skeleton is None
    path = tmp_path / "web.yaml"
    path.write_text("image: busybox\n")
    assert renderer.unit(read_declared(str(path)), str(path)).endswith("# local edit\n")


@pytest.mark.parametrize(("source", "message"), [
    ("{% for l in unit %}{{ l }} {% endfor %}{{ source }}{{ root }}{{ unit_name }}{{ service }}",
     "not rendered one item a line"),
    ("{{ source | replace('a', 'b') }}{{ root }}{{ unit_name }}", "does not render as jinja2"),
    ("{{ source | upper }}", "unknown slot"),
    ("{{ source[1:] }}", "cut"),
])
def test_a_template_the_skeleton_cannot_reproduce_is_refused(source: str, message: str) -> None:
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    with pytest.raises(ValueError, match=message):
        skeleton.compile_template(env.from_string(source), skeleton.SIGNATURES["container.service.j2"])


def test_the_generator_leaves_jinja2_unimported(tmp_path: Path) -> None:
    src = tmp_path / "containers"
    src.mkdir()
    (src / "web.yaml").write_text("image: busybox\nports: ['8080:80']\nnetwork: bridge\n")
    probe = ("import sys; from sdctr.systemd.generator import main; main([sys.argv[1]]); "
             "print(sorted(m for m in sys.modules if m.startswith(('jinja2', 'markupsafe'))))")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "out")], capture_output=True,
                         text=True, check=True, cwd=REPO, env={"SDCTR_CONTAINERS_DIR": str(src),
                                                                "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"
    assert "Wants=network-online.target" in (tmp_path / "out/ctr-web.service").read_text()
