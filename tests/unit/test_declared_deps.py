"""A declared container's depends_on and its extra [Unit]/[Service] settings: in its unit, and
refused with a message naming the file, the key and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdctr.log import SdctrError
from sdctr.options import read_declared
from sdctr.systemd.generator import Renderer, generate
from sdctr.systemd.properties import Host

pytestmark = pytest.mark.unit


def sections(text: str) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault((section, key), []).append(value)
    return out


def run(tmp_path: Path, files: dict[str, str]) -> tuple[list[str], Path]:
    src, out = tmp_path / "containers", tmp_path / "out"
    src.mkdir()
    for name, text in files.items():
        (src / f"{name}.yaml").write_text(text)
    return generate(str(src), str(out), Renderer(Host(1, 0), ["/usr/bin/sdctr"])), out


def test_depends_on_orders_and_requires_the_other_containers(tmp_path: Path) -> None:
    errors, out = run(tmp_path, {"db": "image: busybox\n", "cache": "image: busybox\n",
                                 "web": "image: busybox\ndepends_on: [db, cache]\n"})
    assert errors == []
    web = sections((out / "ctr-web.service").read_text())
    assert sorted(web[("Unit", "Requires")]) == ["ctr-cache.service", "ctr-db.service", "sdctr.slice"]
    assert "ctr-db.service" in web[("Unit", "After")] and "ctr-cache.service" in web[("Unit", "After")]
    assert ("Unit", "Requires") in sections((out / "ctr-db.service").read_text())
    assert "ctr-" not in "".join(sections((out / "ctr-db.service").read_text())[("Unit", "Requires")])


def test_an_unknown_dependency_is_an_error_of_its_file_alone(tmp_path: Path) -> None:
    errors, out = run(tmp_path, {"web": "image: busybox\ndepends_on: db\n", "other": "image: busybox\n"})
    src = tmp_path / "containers"
    assert errors == [f"{src}/web.yaml: depends_on 'db': no such declared container ({src}/db.yaml)"]
    assert sorted(p.name for p in (out / "multi-user.target.wants").iterdir()) == [
        "ctr-other.service", "sdctr-generator-errors.service"]
    assert "/bin/false" in (out / "ctr-web.service").read_text()


def test_a_cycle_is_an_error_of_each_member(tmp_path: Path) -> None:
    deps = {"a": "b", "b": "c", "c": "a", "d": "d", "e": "a"}
    errors, _ = run(tmp_path, {n: f"image: busybox\ndepends_on: [{d}]\n" for n, d in deps.items()})
    src = tmp_path / "containers"
    assert sorted(errors) == [f"{src}/a.yaml: depends_on: a cycle: a -> b -> c -> a",
                              f"{src}/b.yaml: depends_on: a cycle: b -> c -> a -> b",
                              f"{src}/c.yaml: depends_on: a cycle: c -> a -> b -> c",
                              f"{src}/d.yaml: depends_on: a cycle: d -> d"]


def test_extra_settings_pass_through_in_order(tmp_path: Path) -> None:
    errors, out = run(tmp_path, {"web": (
        "image: busybox\n"
        "unit:\n  Documentation: https://example.com\n  ConditionPathExists: /etc/web.conf\n"
        "  After: postgresql.service\n"
        "service:\n  MemoryHigh: 200M\n  IPAddressDeny: [any, 10.0.0.0/8]\n  OOMPolicy: kill\n"
        "  IPAccounting: true\n")})
    assert errors == []
    web = sections((out / "ctr-web.service").read_text())
    assert web[("Unit", "Documentation")] == ["https://example.com"]
    assert web[("Unit", "ConditionPathExists")] == ["/etc/web.conf"]
    assert "postgresql.service" in web[("Unit", "After")]  # systemd adds to its own After=
    assert web[("Service", "MemoryHigh")] == ["200M"]
    assert web[("Service", "IPAddressDeny")] == ["any", "10.0.0.0/8"]
    assert web[("Service", "IPAccounting")] == ["yes"]


@pytest.mark.parametrize(("text", "expected", "hint"), [
    ("service:\n  ExecStart: /bin/sh\n",
     "web.yaml:3: service: ExecStart is set by sdctr itself and cannot be given in [Service]", "command"),
    ("service:\n  MemoryMax: 1G\n", "web.yaml:3: service: MemoryMax is set by sdctr itself", "memory"),
    ("unit:\n  Description: mine\n", "web.yaml:3: unit: Description is set by sdctr itself", None),
    ("service:\n  DeviceAllow: /dev/sda rw\n", "web.yaml:3: service: DeviceAllow is set by sdctr", "devices"),
    ("service:\n  memory-high: 1\n", "web.yaml:3: service: 'memory-high' is not a systemd setting", None),
    ("service: [MemoryHigh=1G]\n", "web.yaml:3: service takes a mapping of [Service] settings", None),
    ("service:\n  MemoryHigh: {a: 1}\n", "web.yaml:3: service: MemoryHigh takes a value or a list", None),
    ("service:\n  Description: \"a\\nExecStartPre=/bin/evil\"\n", "web.yaml:3: service: Description takes",
     None),
    ("depends_on: [-x]\n", "web.yaml:3: depends_on '-x' is not a valid container name", None),
])
def test_refused_settings_name_the_file_the_line_and_the_key(tmp_path: Path, text: str, expected: str,
                                                              hint: str | None) -> None:
    path = tmp_path / "web.yaml"
    path.write_text("image: busybox\nmemory: 64m\n" + text)
    with pytest.raises(SdctrError) as e:
        read_declared(str(path))
    assert str(e.value).startswith(f"{tmp_path}/{expected}"), str(e.value)
    if hint:
        assert hint in (e.value.hint or ""), e.value.hint


def test_declared_keys_are_not_flags() -> None:
    from sdctr.cli.parser import build_parser

    for flag in ("--depends-on", "--unit", "--service", "--unit-settings"):
        with pytest.raises(SdctrError, match="unrecognized arguments"):
            build_parser().parse_args(["run", flag, "db", "busybox"])
