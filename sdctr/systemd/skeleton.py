"""Precompiled unit templates: a jinja2 template rendered once, with a marker in place of each
variable, is a skeleton (literal text between named slots) that a generator fills without
importing jinja2 (~30 ms of a 100 ms budget) or compiling the template (~15 ms) at every boot.

The template stays the one source of the unit's text. `python -m sdctr.systemd.skeleton`
writes the skeletons into sdctr/systemd/compiled.py together with the template text they were
made from; load() hands a skeleton out only while the template on disk is still that text (an
edited template falls back to jinja2), and a unit test says when compiled.py is stale.

A skeleton is made only for what fills exactly: each variant (one per combination of the
template's true/false flags) is checked against jinja2's own rendering of probe values (lists
of none, one and several lines; strings with quotes, braces, percent signs) before it is
written. A template a skeleton cannot reproduce is refused when compiled.py is made, never at
boot. A list variable must be rendered one item a line (`{% for l in lines %}{{ l }}` + newline).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

MARK = "\x00"
COMPILED = "compiled.py"


class Signature:
    """A template's variables by kind: strings, lists (of lines) and true/false flags."""

    def __init__(self, strings: Sequence[str], lists: Sequence[str], flags: Sequence[str]) -> None:
        self.strings, self.lists, self.flags = tuple(strings), tuple(lists), tuple(flags)


# the templates a generator renders for every container; the rare ones (errors) stay jinja2's
SIGNATURES = {
    "container.service.j2": Signature(strings=("source", "root", "unit_name"),
                                      lists=("unit", "service"), flags=("publishes",)),
}

def variant(flags: Sequence[str], values: Mapping[str, Any]) -> str:
    """The key of the flags' combination: "publishes=1", joined by commas."""
    return ",".join(f"{f}={int(bool(values[f]))}" for f in flags)


def fill(parts: Sequence[str], values: Mapping[str, Any]) -> str:
    out = [parts[0]]
    for i in range(1, len(parts), 2):
        value = values[parts[i]]
        out.append(value if isinstance(value, str) else "".join([f"{line}\n" for line in value]))
        out.append(parts[i + 1])
    return "".join(out)


def load(templates_dir: str, name: str) -> tuple[Signature, dict[str, tuple[str, ...]]] | None:
    """The template's skeletons, or None when compiled.py has none for the template on disk."""
    import os

    try:
        from sdctr.systemd import compiled
    except ImportError:
        return None
    entry = compiled.TEMPLATES.get(name)
    if entry is None or name not in SIGNATURES:
        return None
    try:
        with open(os.path.join(templates_dir, name)) as f:
            text = f.read()
    except OSError:
        return None
    source, variants = entry
    return (SIGNATURES[name], variants) if source == text else None


# --- jinja2, and making compiled.py with it --------------------------------------------------------

def environment(templates: str) -> Any:
    """The environment of the templates in `templates` (for every template, and the fallback)."""
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(templates), trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)


_PROBE_STRINGS = ("", "x", 'a "b" {c} %d $e\\f')
_PROBE_LISTS: tuple[list[str], ...] = ([], ["one=1"], ["a=1", "", 'b="2 3" %s {x}'])


def compile_template(template: Any, signature: Signature) -> dict[str, tuple[str, ...]]:
    """Every variant's skeleton, each proven against jinja2's rendering of the probe values."""
    import itertools

    variants: dict[str, tuple[str, ...]] = {}
    for bits in itertools.product((False, True), repeat=len(signature.flags)):
        flags = dict(zip(signature.flags, bits))
        marked = {**{s: f"{MARK}{s}{MARK}" for s in signature.strings},
                  **{v: [f"{MARK}{v}{MARK}"] for v in signature.lists}, **flags}
        parts = template.render(**marked).split(MARK)
        if len(parts) % 2 == 0:
            raise ValueError(f"{template.name}: a variable's text is cut (a filter on it?)")
        for i in range(1, len(parts), 2):
            if parts[i] in signature.lists:  # the item's line end belongs to the slot
                if not parts[i + 1].startswith("\n"):
                    raise ValueError(f"{template.name}: {parts[i]} is not rendered one item a line")
                parts[i + 1] = parts[i + 1][1:]
            elif parts[i] not in signature.strings:
                raise ValueError(f"{template.name}: unknown slot {parts[i]!r}")
        key = variant(signature.flags, flags)
        variants[key] = tuple(parts)
        for strings, lists in zip(itertools.cycle(_PROBE_STRINGS), _PROBE_LISTS * 2):
            probe = {**{s: f"{s}{strings}" for s in signature.strings},
                     **{v: [f"{v}{line}" for line in lists] for v in signature.lists}, **flags}
            if fill(variants[key], probe) != template.render(**probe):
                raise ValueError(f"{template.name} ({key}): the skeleton does not render as jinja2")
    return variants


def compiled_text(templates_dir: str) -> str:
    """compiled.py's text for the templates in `templates_dir`."""
    import os

    env = environment(templates_dir)
    entries = []
    for name in sorted(SIGNATURES):
        with open(os.path.join(templates_dir, name)) as f:
            source = f.read()
        variants = compile_template(env.get_template(name), SIGNATURES[name])
        entries.append(f"    {name!r}: ({source!r},\n     {variants!r}),\n")
    text = ('"""Made by `python -m sdctr.systemd.skeleton` from templates/: do not edit (see '
            'sdctr.systemd.skeleton)."""\n# ruff: noqa: E501\n\n'
            "TEMPLATES: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {\n" + "".join(entries) + "}\n")
    return text


if __name__ == "__main__":
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, COMPILED), "w") as f:
        f.write(compiled_text(os.path.join(here, "templates")))
