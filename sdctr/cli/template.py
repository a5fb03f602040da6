"""Docker's `--format` templates, one engine for every listing and `inspect`: the Go-template
subset Docker users write, evaluated directly (no translation to another template language,
so an error names what Docker would).

Supported: fields `{{.Name}}`, `{{.A.B}}`, `{{.}}`; functions `json`, `upper`, `lower`,
`title`, `index X KEY...`, `printf FMT ARGS...`, `join LIST SEP`; pipelines `{{.Names | upper}}`;
string and number literals; `{{-`/`-}}` trimming; `\\t` and `\\n` as Docker's CLI replaces them;
and the `table` prefix: a header row (Docker's column names where it has them) and columns
aligned as Go's tabwriter does for Docker (cells padded by 3, at least 10 wide).
Not supported (one error line says so): `if`, `range`, `with`, variables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sdctr.log import SdctrError

# Docker's column titles (docker/cli formatter); other fields: the name in upper case
HEADERS = {"ID": "CONTAINER ID", "Id": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
           "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS", "Status": "STATUS",
           "Size": "SIZE", "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "State": "STATE",
           "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES", "Repository": "REPOSITORY",
           "Tag": "TAG", "CreatedSince": "CREATED", "Digest": "DIGEST", "Driver": "DRIVER",
           "Name": "NAME", "Mountpoint": "MOUNTPOINT", "Scope": "SCOPE"}
IMAGE_HEADERS = {"ID": "IMAGE ID"}
VOLUME_HEADERS = {"Name": "VOLUME NAME"}

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\||[^\s|]+')
_UNSUPPORTED = ("if", "else", "end", "range", "with", "define", "template", "block")


class Template:
    def __init__(self, text: str, headers: Mapping[str, str] | None = None):
        self.source = text
        self.table = text.startswith("table")
        body = text[len("table"):].strip(" ") if self.table else text
        body = body.replace("\\t", "\t").replace("\\n", "\n")
        self.headers = {**HEADERS, **(headers or {})}
        self.parts = self._parse(body)

    def _parse(self, body: str) -> list[str | list[list[str]]]:
        parts: list[str | list[list[str]]] = []
        pos, trim_next = 0, False
        for m in _ACTION.finditer(body):
            literal = body[pos:m.start()]
            if trim_next:
                literal = literal.lstrip()
            if m.group(1):
                literal = literal.rstrip()
            parts.append(literal)
            trim_next = bool(m.group(3))
            words = _TOKEN.findall(m.group(2).strip())
            if not words:
                raise self._error("an empty action {{}}")
            if words[0] in _UNSUPPORTED or words[0].startswith("$"):
                raise self._error(f"{words[0]!r} is not supported (fields, json, upper, lower, index, "
                                  "printf, join and table are)")
            commands: list[list[str]] = [[]]
            for w in words:
                if w == "|":
                    commands.append([])
                else:
                    commands[-1].append(w)
            if not all(commands):
                raise self._error("an empty command in a pipeline")
            parts.append(commands)
            pos = m.end()
        tail = body[pos:]
        parts.append(tail.lstrip() if trim_next else tail)
        return parts

    def _error(self, what: str) -> SdctrError:
        return SdctrError(f"--format {self.source!r}: {what}")

    def render(self, doc: Any) -> str:
        return "".join(p if isinstance(p, str) else _text(self._pipeline(p, doc)) for p in self.parts)

    def header(self) -> str:
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
                continue
            fields = [w for c in p for w in c if w.startswith(".") and len(w) > 1]
            name = fields[0].rsplit(".", 1)[-1] if fields else ""
            out.append(self.headers.get(name, name.upper()))
        return "".join(out)

    def _pipeline(self, commands: list[list[str]], doc: Any) -> Any:
        value: Any = _NOTHING
        for command in commands:
            value = self._command(command, doc, value)
        return value

    def _command(self, words: list[str], doc: Any, piped: Any) -> Any:
        head, args = words[0], [self._term(w, doc) for w in words[1:]]
        if piped is not _NOTHING:
            args.append(piped)
        if head in FUNCTIONS:
            try:
                return FUNCTIONS[head](*args)
            except (TypeError, KeyError, IndexError, ValueError) as e:
                raise self._error(f"{head}: {e}") from None
        if args:
            raise self._error(f"{head!r} is not a function")
        return self._term(head, doc)

    def _term(self, word: str, doc: Any) -> Any:
        if word.startswith('"'):
            return json.loads(word)
        if word.startswith("`"):
            return word[1:-1]
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        if word in ("true", "false"):
            return word == "true"
        if not word.startswith("."):
            raise self._error(f"{word!r} is not a field (fields start with a dot: .{word})")
        value = doc
        for name in filter(None, word.split(".")):
            if isinstance(value, Mapping) and name in value:
                value = value[name]
            else:
                raise self._error(f"no field {name!r}" + (f" (there are: {', '.join(sorted(value))})"
                                                           if isinstance(value, Mapping) else ""))
        return value


_NOTHING = object()


def _index(value: Any, *keys: Any) -> Any:
    for k in keys:
        value = value[k]
    return value


def _printf(fmt: str, *args: Any) -> str:
    """Go's verbs that matter here: %s %v %d %q %%, with widths (as Python's %)."""
    py = re.sub(r"%([-0-9.]*)v", r"%\1s", fmt)
    py = re.sub(r"%([-0-9.]*)q", r"%\1s", py)
    conv = [json.dumps(a) if m == "q" else (_text(a) if m in "sv" else a)
            for a, m in zip(args, re.findall(r"%[-0-9.]*([a-zA-Z])", fmt.replace("%%", "")))]
    return py % tuple(conv)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": lambda v: json.dumps(v, separators=(",", ":")),
    "upper": lambda v: _text(v).upper(),
    "lower": lambda v: _text(v).lower(),
    "title": lambda v: _text(v).title(),
    "index": _index,
    "printf": _printf,
    "join": lambda v, sep: sep.join(_text(x) for x in v),
}


def _text(value: Any) -> str:
    """A value as Go's templates print it: [a b], map[k:v], true, <nil>; 1.0 as 1."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "<nil>"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_text(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


def render_all(text: str, docs: Sequence[Any], headers: Mapping[str, str] | None = None) -> list[str]:
    """The lines `--format text` prints for `docs`; with `table`, a header and aligned columns."""
    template = Template(text, headers)
    lines = [template.render(d) for d in docs]
    if not template.table:
        return lines
    return tabwrite([template.header(), *lines])


def tabwrite(lines: Sequence[str], minwidth: int = 10, padding: int = 3) -> list[str]:
    """Go's text/tabwriter as Docker's CLI sets it up: tab-terminated cells padded to one width
    per column (the text after a line's last tab is not a cell)."""
    rows = [line.split("\t") for line in "\n".join(lines).split("\n")]
    widths: list[int] = []
    for cells in rows:
        for i, cell in enumerate(cells[:-1]):
            w = max(minwidth, len(cell) + padding)
            if i == len(widths):
                widths.append(w)
            else:
                widths[i] = max(widths[i], w)
    return ["".join(c.ljust(widths[i]) for i, c in enumerate(cells[:-1])) + cells[-1] for cells in rows]
