"""The package shows the data flow (DESIGN.md): cli -> image -> storage -> net -> systemd -> init,
with runtime orchestrating and oci/ pure formats beneath. Nothing downstream imports anything
upstream of it, lazy imports included (a lazy import is still a dependency: it only moves the
cost). Read from the source with ast, so a violation names the file and line."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sdctr"

# rank along the flow: a module may import only its own subpackage, the top level's shared
# modules, and subpackages of a higher rank
RANK = {"cli": 0, "runtime": 1, "image": 2, "storage": 3, "net": 4, "systemd": 5, "init": 6, "oci": 7}
# the top level: main is the one entry (it dispatches to cli, the hooks and the init); the rest
# are shared by every stage and import only each other and oci/'s pure formats
ENTRY = "main"
SHARED_MAY_IMPORT = {"oci"}


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        yield name.removesuffix(".__init__"), path


def type_only_lines(tree: ast.AST) -> set[int]:
    """Lines of imports under `if TYPE_CHECKING:`: no dependency at run time, so no cycle."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            lines |= {n.lineno for stmt in node.body for n in ast.walk(stmt) if hasattr(n, "lineno")}
    return lines


def imports(path: Path, *, runtime_only: bool = False) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    skip = type_only_lines(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "sdctr" or node.module.startswith("sdctr."):
                for alias in node.names:  # `from pkg import x`: x is a module, or a name of pkg's
                    sub = f"{node.module}.{alias.name}"
                    yield node.lineno, sub if is_module(sub) else node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sdctr."):
                    yield node.lineno, alias.name


def is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").exists() or (PACKAGE / rel / "__init__.py").exists()


def stage(module: str) -> str | None:
    """The subpackage a module belongs to; None for the top level."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANK) else None


def violations() -> list[str]:
    found = []
    for name, path in modules():
        here = stage(name)
        for line, target in imports(path):
            there = stage(target)
            where = f"{path.relative_to(PACKAGE.parent)}:{line}: {name} imports {target}"
            if there is None or there == here:
                continue
            if here is None:
                if name.endswith("." + ENTRY):
                    continue
                if there not in SHARED_MAY_IMPORT:
                    found.append(f"{where} (the shared top level imports no stage)")
            elif RANK[there] < RANK[here]:
                found.append(f"{where} ({there}/ is upstream of {here}/)")
    return found


def test_nothing_downstream_imports_upstream() -> None:
    assert violations() == []


def test_the_rules_see_a_violation() -> None:
    # the checker itself, on a planted module: init/ importing cli/ must be reported
    planted = PACKAGE / "init" / "_planted_for_test.py"
    planted.write_text("from sdctr.cli import parser\n")
    try:
        assert any("_planted_for_test" in v and "cli/ is upstream of init/" in v for v in violations())
    finally:
        planted.unlink()


@pytest.mark.parametrize(("importer", "forbidden"), [
    ("init", ("cli", "image", "net", "runtime")), ("oci", ("image", "storage", "cli")),
    ("storage", ("image", "cli", "runtime")),
])
def test_the_issue_rules_by_name(importer: str, forbidden: tuple[str, ...]) -> None:
    for name, path in modules():
        if stage(name) == importer:
            bad = [t for _, t in imports(path) if stage(t) in forbidden]
            assert bad == [], f"{name}: {bad}"


def test_only_main_imports_cli() -> None:
    for name, path in modules():
        if stage(name) != "cli" and not name.endswith("." + ENTRY):
            assert [t for _, t in imports(path) if stage(t) == "cli"] == [], name


def test_no_cycles_between_modules() -> None:
    graph = {name: {t for _, t in imports(path, runtime_only=True)} for name, path in modules()}
    seen: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, trail: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if seen.get(nxt) == 1:
                raise AssertionError(" -> ".join([*trail[trail.index(nxt):], nxt]) if nxt in trail
                                     else f"{node} -> {nxt}")
            if nxt not in seen:
                visit(nxt, [*trail, nxt])
        seen[node] = 2

    for name in sorted(graph):
        if name not in seen:
            visit(name, [name])
