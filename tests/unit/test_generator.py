"""Declared containers: YAML files checked by the option table, rendered by the generator into
units whose properties are the transient path's. Golden fixtures carry their own expectations
(quadlet's habit): `## assert-key-is SECTION KEY VALUE` in the .container file."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sdctr.image.store import Image, ImageConfig
from sdctr.log import SdctrError
from sdctr.options import read_declared
from sdctr.runtime.resolve import resolve
from sdctr.systemd.generator import Renderer, declared_id, generate, main
from sdctr.systemd.properties import Host, properties, unit_file

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[2]
SDCTR = ["/usr/bin/sdctr"]
SOURCE = "/etc/sdctr/containers/web.yaml"


def renderer(cgroup: int = 1) -> Renderer:
    return Renderer(Host(cgroup, 0), SDCTR, root="/var/lib/sdctr")


def sections(text: str) -> dict[tuple[str, str], list[str]]:
    """A unit file as {(section, key): [values, in order]}."""
    out: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault((section, key), []).append(value)
    return out


def declare(tmp_path: Path, text: str, name: str = "web") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return str(path)


def test_declared_unit_matches_golden_and_its_assertions(tmp_path: Path) -> None:
    fixture = (GOLDEN / "declared-web.container").read_text()
    text = renderer().unit(read_declared(declare(tmp_path, fixture)), SOURCE)
    # key by key (quadlet's way, as golden/web.service): no byte snapshot to re-bless with the code
    keys = sections(text)
    asserted = missing = 0
    for line in fixture.splitlines():
        if line.startswith("## assert-key-is "):
            section, key, value = shlex.split(line)[2:]
            assert value in keys.get((section, key), []), (section, key, keys.get((section, key)))
            asserted += 1
        elif line.startswith("## assert-key-missing "):
            section, key = shlex.split(line)[2:]
            assert (section, key) not in keys, (section, key, keys[(section, key)])
            missing += 1
        else:
            assert not line.startswith("## "), f"an assertion this test does not know: {line}"
    assert asserted >= 10 and missing >= 2


def test_only_a_declared_unit_that_publishes_ports_waits_for_network_online(tmp_path: Path) -> None:
    fixture = (GOLDEN / "declared-web.container").read_text()
    without = fixture.replace("ports:\n  - 8080:80\n", "")
    assert without != fixture
    for text, publishes in ((fixture, True), (without, False)):
        keys = sections(renderer().unit(read_declared(declare(tmp_path, text)), SOURCE))
        ordering = " ".join(keys.get(("Unit", "Wants"), []) + keys.get(("Unit", "After"), []))
        assert ("network-online.target" in ordering) is publishes, (publishes, ordering)
        assert any("network.target" in v.split() for v in keys[("Unit", "After")])  # the bridge's, kept


def test_generated_and_transient_units_agree_key_by_key(tmp_path: Path) -> None:
    """The same options as a declared container and as `sdctr run -d`: every property the
    transient path sends over D-Bus is in the generated unit with the same value, the first
    ExecStartPre alone excepted (the declare hook, which makes the record, then does prestart)."""
    fixture = (GOLDEN / "declared-web.container").read_text()
    for cgroup in (1, 2):
        options = read_declared(declare(tmp_path, fixture))
        image = Image(id="f" * 64, repo_tags=("nginx:latest",), manifest_digest="", layers=(),
                      layer_blobs=(), config=ImageConfig(cmd=("nginx",)), created="", size=0)
        spec = resolve(options, image).replace(id=declared_id("web"), declared=True)
        transient = properties(spec, Host(cgroup, 252), SDCTR)
        generated = sections(renderer(cgroup).unit(options, SOURCE))
        from_bus = sections(unit_file(transient))
        assert from_bus, "no properties?"
        for (section, key), values in from_bus.items():
            if key == "ExecStartPre":
                assert generated[("Service", key)][0] == "/usr/bin/sdctr hook declare web"
                assert generated[("Service", key)][1:] == values[1:]
                assert values[0].endswith(f"hook prestart {spec.id}")
                continue
            if key == "After":  # then the template's own (local-fs.target, ...)
                assert generated[(section, key)][:len(values)] == values
                continue
            assert generated.get((section, key)) == values, (section, key)
        assert ("Service", "MemoryLimit" if cgroup == 1 else "MemoryMax") in generated


@pytest.mark.parametrize(("text", "expected"), [
    ("image: busybox\nmemroy: 256m\n", "web.yaml:2: unknown key 'memroy'"),
    ("image: busybox\ncpu_shares: 10\nmemory: 10xb\n", "web.yaml:3: memory '10xb' is not a size"),
    ("image: busybox\nmemory: [1]\n", "web.yaml:2: memory takes a string or a number, not a list"),
    ("image: busybox\nread_only: 1\n", "web.yaml:2: read_only takes true or false, not a number"),
    ("image: busybox\nrestart: no\n", "web.yaml:2: restart takes a string or a number, not true/false"),
    ("image: [busybox\n", "web.yaml:2: not valid YAML"),
    ("- image: busybox\n", "web.yaml: a declared container is a mapping of keys, not a list"),
    ("memory: 64m\n", "web.yaml: no image given"),
    ("", "web.yaml: a declared container is a mapping of keys, not null"),
])
def test_errors_name_the_file_the_line_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(SdctrError) as e:
        read_declared(declare(tmp_path, text))
    assert str(e.value).startswith(str(tmp_path / expected))


def test_the_file_names_the_container(tmp_path: Path) -> None:
    assert read_declared(declare(tmp_path, "image: busybox\n", name="db-1")).name == "db-1"
    with pytest.raises(SdctrError, match="not a valid container name"):
        read_declared(declare(tmp_path, "image: busybox\n", name="-bad"))
    with pytest.raises(SdctrError, match="unknown key 'name'"):  # the file's name is the name
        read_declared(declare(tmp_path, "image: busybox\nname: other\n"))


def test_a_broken_file_does_not_keep_the_others_from_their_units(tmp_path: Path) -> None:
    src, out = tmp_path / "containers", tmp_path / "out"
    src.mkdir()
    (src / "a.yaml").write_text("image: busybox\n")
    (src / "typo.yaml").write_text("image: busybox\nmemroy: 64m\n")
    (src / "z.yaml").write_text("image: busybox\nmemory: 64m\n")
    (src / "notes.txt").write_text("not a container\n")
    errors = generate(str(src), str(out), renderer())
    assert len(errors) == 1
    assert errors[0].startswith(f"{src}/typo.yaml:2: unknown key 'memroy' (the keys are: ")
    units = sorted(p.name for p in out.iterdir() if p.is_file())
    assert units == ["ctr-a.service", "ctr-typo.service", "ctr-z.service", "sdctr-generator-errors.service"]
    # a typo must not make the boot "degraded": its unit is there, not started at boot
    assert sorted(os.listdir(out / "multi-user.target.wants")) == [
        "ctr-a.service", "ctr-z.service", "sdctr-generator-errors.service"]
    said = sections((out / "sdctr-generator-errors.service").read_text())[("Service", "ExecStart")]
    assert said == [f'/bin/echo "{errors[0]}"']  # in the journal at boot, once journald runs
    assert (out / "multi-user.target.wants" / "ctr-z.service").resolve() == (out / "ctr-z.service").resolve()
    # the broken one's unit fails with the message, so `systemctl start/status ctr-typo` say why
    typo = sections((out / "ctr-typo.service").read_text())
    assert typo[("Service", "ExecStart")][0].startswith(f'/bin/echo "{src}/typo.yaml:2: unknown key')
    assert "MemoryLimit=67108864" in (out / "ctr-z.service").read_text()


def test_the_generator_never_fails_the_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "containers"
    src.mkdir()
    (src / "typo.yaml").write_text("image: busybox\nmemroy: 64m\n")
    monkeypatch.setenv("SDCTR_CONTAINERS_DIR", str(src))
    assert main([str(tmp_path / "out"), str(tmp_path / "early"), str(tmp_path / "late")]) == 0
    assert f"sdctr-generator: {src}/typo.yaml:2: unknown key 'memroy'" in capsys.readouterr().err
    monkeypatch.setenv("SDCTR_CONTAINERS_DIR", str(tmp_path / "none"))  # no directory: no units
    assert main([str(tmp_path / "out2")]) == 0
    assert not (tmp_path / "out2").exists()


def run_generator(src: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "SDCTR_CONTAINERS_DIR": str(src), "PYTHONPATH": str(REPO)}
    script = REPO / "units/system-generators/sdctr-generator"
    return subprocess.run([sys.executable, str(script), str(out), str(out), str(out)], env=env,
                          capture_output=True, text=True, check=True)


def test_the_generator_imports_almost_nothing(tmp_path: Path) -> None:
    probe = ("import sys; from sdctr.systemd import generator; "
             "print(' '.join(m for m in sys.modules if m.startswith(('sdctr.', 'httpx', 'ctypes'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, cwd=REPO).stdout.split()
    assert not [m for m in loaded if m.startswith(("sdctr.image", "sdctr.net", "sdctr.runtime",
                                                   "sdctr.storage", "sdctr.systemd.bus", "httpx",
                                                   "ctypes", "sdctr.cli"))], loaded


def test_the_installed_generator_renders_a_hundred_containers(tmp_path: Path) -> None:
    src, out = tmp_path / "containers", tmp_path / "out"
    src.mkdir()
    fixture = (GOLDEN / "declared-web.container").read_text().replace("8080:80", "{port}:80")
    for i in range(100):
        (src / f"web{i}.yaml").write_text(fixture.replace("{port}", str(8000 + i)))
    run_generator(src, out)  # how fast: bench/generator_bench.py (no timed assertion: load varies)
    assert len(list(out.glob("ctr-web*.service"))) == 100
    assert "MemoryLimit=268435456" in (out / "ctr-web99.service").read_text()


@pytest.mark.parametrize(("policy", "by_hand", "back"), [
    ("always", False, True), ("always", True, True), ("unless-stopped", False, True),
    ("unless-stopped", True, False), ("on-failure", False, True), ("on-failure", True, False),
    ("no", False, False)])
def test_which_containers_come_back_after_a_reboot(policy: str, by_hand: bool, back: bool) -> None:
    from sdctr.spec import RestartPolicy

    assert RestartPolicy(policy).starts_at_boot(stopped_by_user=by_hand) is back


def test_the_units_a_package_installs() -> None:
    units = REPO / "units"
    assert "d /run/sdctr 0700 root root -" in (units / "tmpfiles.d/sdctr.conf").read_text()
    for line in (units / "system-preset/50-sdctr.preset").read_text().splitlines():
        if line.startswith("enable "):
            assert (units / line.split()[1]).is_file(), line
    for unit in ("sdctr-gc.service", "sdctr-setup.service", "sdctr-restart.service"):
        assert "ExecStart=/usr/bin/sdctr system " in (units / unit).read_text()
    assert os.access(units / "system-generators/sdctr-generator", os.X_OK)
