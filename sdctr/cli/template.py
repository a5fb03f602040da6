"""Docker's `--format` templates, one engine for every listing and `inspect`: the Go-template
subset Docker users write, evaluated directly (no translation to another template language,
so an error names what Docker would).

Supported: fields `{{.Name}}`, `{{.A.B}}`, `{{.}}`, `{{$.X}}`; functions `json`, `upper`,
`lower`, `title`, `index X KEY...`, `printf FMT ARGS...`, `join LIST SEP`; pipelines
`{{.Names | upper}}`; `{{if}}`, `{{range}}` and `{{with}}`, each with `{{else}}` and `{{end}}`;
string and number literals; `{{-`/`-}}` trimming; `\\t` and `\\n` as Docker's CLI replaces them;
and the `table` prefix: a header row (Docker's column names where it has them) and columns
aligned as Go's tabwriter does for Docker (cells padded by 3, at least 10 wide).
Not supported (one error line says so): `define`/`template`, variables that are assigned.
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
# (kind, value, body, else): ("text", str, [], []), ("action", commands, [], []),
# ("if" | "range" | "with", commands, nodes, nodes)
Node = tuple[str, Any, list[Any], list[Any]]
_UNSUPPORTED = ("define", "template", "block", "break", "continue")


class Template:
    def __init__(self, text: str, headers: Mapping[str, str] | None = None):
        self.source = text
        self.table = text.startswith("table")
        body = text[len("table"):].strip(" ") if self.table else text
        body = body.replace("\\t", "\t").replace("\\n", "\n")
        self.headers = {**HEADERS, **(headers or {})}
        self.nodes = self._parse_list(self._lex(body), 0, ())[0]

    def _lex(self, body: str) -> list[str | list[str]]:
        """Text, and each action's words."""
        items: list[str | list[str]] = []
        pos, trim_next = 0, False
        for m in _ACTION.finditer(body):
            literal = body[pos:m.start()]
            if trim_next:
                literal = literal.lstrip()
            if m.group(1):
                literal = literal.rstrip()
            items.append(literal)
            trim_next = bool(m.group(3))
            words = _TOKEN.findall(m.group(2).strip())
            if not words:
                raise self._error("an empty action {{}}")
            items.append(words)
            pos = m.end()
        tail = body[pos:]
        items.append(tail.lstrip() if trim_next else tail)
        return items

    def _parse_list(self, items: list[str | list[str]], i: int,
                    stops: tuple[str, ...]) -> tuple[list[Node], int, str | None]:
        """Nodes until one of `stops` ({{else}}, {{end}}); the next index and the stop found."""
        nodes: list[Node] = []
        while i < len(items):
            item = items[i]
            i += 1
            if isinstance(item, str):
                nodes.append(("text", item, [], []))
                continue
            keyword = item[0]
            if keyword in stops and len(item) == 1:
                return nodes, i, keyword
            if keyword in ("if", "range", "with"):
                if len(item) < 2:
                    raise self._error(f"{{{{{keyword}}}}} needs a value")
                body, i, stop = self._parse_list(items, i, ("else", "end"))
                otherwise: list[Node] = []
                if stop == "else":
                    otherwise, i, stop = self._parse_list(items, i, ("end",))
                if stop != "end":
                    raise self._error(f"{{{{{keyword}}}}} has no {{{{end}}}}")
                nodes.append((keyword, self._commands(item[1:]), body, otherwise))
            elif keyword in ("else", "end"):
                raise self._error(f"{{{{{keyword}}}}} without {{{{if}}}}, {{{{range}}}} or {{{{with}}}}")
            elif keyword in _UNSUPPORTED or (keyword.startswith("$") and ":=" in item):
                raise self._error(f"{keyword!r} is not supported (fields, functions, if, range, with and "
                                  "table are)")
            else:
                nodes.append(("action", self._commands(item), [], []))
        if stops:
            raise self._error("{{end}} is missing")
        return nodes, i, None

    def _commands(self, words: list[str]) -> list[list[str]]:
        commands: list[list[str]] = [[]]
        for w in words:
            if w == "|":
                commands.append([])
            else:
                commands[-1].append(w)
        if not all(commands):
            raise self._error("an empty command in a pipeline")
        return commands

    def _error(self, what: str) -> SdctrError:
        return SdctrError(f"--format {self.source!r}: {what}")

    def render(self, doc: Any) -> str:
        out: list[str] = []
        self._run(self.nodes, doc, doc, out)
        return "".join(out)

    def _run(self, nodes: list[Node], dot: Any, root: Any, out: list[str]) -> None:
        for kind, value, body, otherwise in nodes:
            if kind == "text":
                out.append(value)
                continue
            result = self._pipeline(value, dot, root)
            if kind == "action":
                out.append(_text(result))
            elif kind == "if":
                self._run(body if _truth(result) else otherwise, dot, root, out)
            elif kind == "with":
                if _truth(result):
                    self._run(body, result, root, out)
                else:
                    self._run(otherwise, dot, root, out)
            else:  # range: a list's items, a map's values in its keys' order (as Go)
                elements = [result[k] for k in sorted(result)] if isinstance(result, Mapping) else \
                    list(result or ())
                for element in elements:
                    self._run(body, element, root, out)
                if not elements:
                    self._run(otherwise, dot, root, out)

    def header(self) -> str:
        out = []
        for kind, value, _, _ in self.nodes:
            if kind == "text":
                out.append(value)
                continue
            fields = [w for c in value for w in c if w.startswith(".") and len(w) > 1]
            name = fields[0].rsplit(".", 1)[-1] if fields else ""
            out.append(self.headers.get(name, name.upper()) if kind == "action" else "")
        return "".join(out)

    def _pipeline(self, commands: list[list[str]], dot: Any, root: Any) -> Any:
        value: Any = _NOTHING
        for command in commands:
            value = self._command(command, dot, root, value)
        return value

    def _command(self, words: list[str], dot: Any, root: Any, piped: Any) -> Any:
        head, args = words[0], [self._term(w, dot, root) for w in words[1:]]
        if piped is not _NOTHING:
            args.append(piped)
        if head in FUNCTIONS:
            try:
                return FUNCTIONS[head](*args)
            except (TypeError, KeyError, IndexError, ValueError) as e:
                raise self._error(f"{head}: {e}") from None
        if args:
            raise self._error(f"{head!r} is not a function")
        return self._term(head, dot, root)

    def _term(self, word: str, dot: Any, root: Any) -> Any:
        if word.startswith('"'):
            return json.loads(word)
        if word.startswith("`"):
            return word[1:-1]
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        if word in ("true", "false"):
            return word == "true"
        value = dot
        if word == "$" or word.startswith("$."):  # the whole document, inside range and with too
            value, word = root, word[1:]
        elif not word.startswith("."):
            raise self._error(f"{word!r} is not a field (fields start with a dot: .{word})")
        for name in filter(None, word.split(".")):
            if isinstance(value, Mapping) and name in value:
                value = value[name]
            else:
                raise self._error(f"no field {name!r}" + (f" (there are: {', '.join(sorted(value))})"
                                                           if isinstance(value, Mapping) else ""))
        return value


_NOTHING = object()


def _truth(value: Any) -> bool:
    """Go's: false, 0, nil and empty things are false."""
    return bool(value)


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
