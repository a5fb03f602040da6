"""sdctr's man pages and shell completion, generated at build time (the spec's %build; nothing here
is imported at run time) from what sdctr itself reads, so that none of them can drift:

- sdctr(1), and sdctr-VERB(1) for each of the parser's verbs: the argparse parser;
- sdctr.yaml(5): the settings config.py reads, described by the comments of the configuration the
  package ships (packaging/rpm/sdctr.yaml), which must describe every one of them;
- sdctr-containers(5): the keys of sdctr.options' one table (OPTIONS);
- bash and zsh completion: the parser.

    PYTHONPATH=. python3 packaging/manpage.py all OUTDIR   OUTDIR/man1/*.1, man5/*.5, sdctr.bash, _sdctr
    PYTHONPATH=. python3 packaging/manpage.py man|bash|zsh  one of them on stdout (man: sdctr(1))
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from sdctr import __version__, config, options
from sdctr.cli.parser import build_parser

Parser = argparse.ArgumentParser

HERE = Path(__file__).resolve().parent
SHIPPED_CONFIG = HERE / "rpm/sdctr.yaml"
FILES = "/etc/sdctr/sdctr.yaml, /etc/sdctr/containers/*.yaml, /var/lib/sdctr, /run/sdctr"


# --- the parser ---------------------------------------------------------------------------------

def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:  # type: ignore[type-arg]
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def commands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, list[str], str]]:
    """The parser's own commands, in its order: (name, parser, every name including aliases, help)."""
    action = _subparsers(parser)
    if action is None:
        return []
    helps = {c.dest: c.help or "" for c in action._choices_actions}
    found: dict[int, tuple[str, argparse.ArgumentParser, list[str], str]] = {}
    for name, sub in action.choices.items():
        if id(sub) in found:
            found[id(sub)][2].append(name)  # an alias names the same parser
        else:
            found[id(sub)] = (name, sub, [name], helps.get(name, ""))
    return list(found.values())


def verbs(parser: Parser, prefix: str = "") -> list[tuple[str, Parser, str]]:
    """Every command, nested ones (`system gc`) included, in the parser's order: (name, parser, help)."""
    found = []
    for name, sub, _, help_text in commands(parser):
        found.append((prefix + name, sub, help_text))
        found += verbs(sub, prefix + name + " ")
    return found


def top_verbs(parser: argparse.ArgumentParser) -> list[str]:
    """The verbs that have a page of their own, sdctr-VERB(1)."""
    return [name for name, _, _, _ in commands(parser)]


def option_words(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """(flag, help) of the options a user may type (hidden ones are not offered)."""
    return [(flag, a.help or "") for a in parser._actions if a.help != argparse.SUPPRESS
            for flag in a.option_strings]


# --- roff ---------------------------------------------------------------------------------------

def roff(text: str) -> str:
    """Plain text for a roff line: backslashes escaped, a leading . or ' is not a request, and
    hyphens in options are minus signs (man-pages(7): `\\-` so that a search for -m finds it)."""
    lines = [line.replace("\\", "\\e").replace("-", "\\-") for line in text.rstrip().splitlines()]
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in lines)


def header(name: str, section: int, title: str) -> list[str]:
    # reproducible: the page carries the version, not a build date
    kind = "User Commands" if section == 1 else "File Formats"
    # .nh: no hyphenation, so that names (sdctr, SDCTR_CONFIG) are never split at a line's end
    return [f'.TH {name.upper()} {section} "" "sdctr {__version__}" "{kind}"', ".nh", ".SH NAME",
            f"{roff(name)} \\- {roff(title)}"]


def literal(text: str) -> list[str]:
    """Preformatted lines (argparse's help, a YAML example), as they are."""
    return [".PP", ".nf", roff(text), ".fi"]


def see_also(refs: list[str]) -> list[str]:
    return [".SH SEE ALSO", ",\n".join(rf"\fB{roff(n)}\fR({s})" for n, s in refs)]


def _help(parser: argparse.ArgumentParser) -> str:
    os.environ["COLUMNS"] = "72"  # argparse's width: with man's indent of 7, an 80-column page
    return parser.format_help()


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage without its "usage: " (the lines after the first lose that much indent)."""
    first, *rest = _help(parser).split("\n\n", 1)[0].splitlines()
    return "\n".join([first.removeprefix("usage: "), *(line.removeprefix(" " * 7) for line in rest)])


def _body(parser: argparse.ArgumentParser) -> str:
    """The help without the usage: the description, the arguments, the options."""
    return _help(parser).split("\n\n", 1)[1]


# --- section 1 ----------------------------------------------------------------------------------

def man(parser: argparse.ArgumentParser) -> str:
    """sdctr(1): the global options and the list of verbs, each with its page."""
    out = header("sdctr", 1, (parser.description or "a daemonless container manager").rstrip("."))
    out += [".SH SYNOPSIS", ".B sdctr", r"[\fIOPTIONS\fR] \fICOMMAND\fR [\fIARGS\fR...]", ".SH OPTIONS",
            *literal(_help(parser)), ".SH COMMANDS"]
    for name, _, names, help_text in commands(parser):
        aliases = f" (also {', '.join(names[1:])})" if names[1:] else ""
        out += [".TP", rf"\fBsdctr\-{roff(name)}\fR(1){roff(aliases)}", roff(help_text)]
    out += [".SH FILES", roff(FILES)]
    out += see_also([(f"sdctr-{v}", "1") for v in top_verbs(parser)]
                    + [("sdctr.yaml", "5"), ("sdctr-containers", "5"), ("systemd.unit", "5"),
                       ("systemctl", "1"), ("journalctl", "1")])
    return "\n".join(out) + "\n"


def verb_page(parser: argparse.ArgumentParser, verb: str) -> str:
    """sdctr-VERB(1): the verb's usage and options, then those of its own verbs (`system gc`)."""
    (_, sub, names, help_text), = [c for c in commands(parser) if c[0] == verb]
    out = header(f"sdctr-{verb}", 1, help_text or f"sdctr {verb}")
    out += [".SH SYNOPSIS", *literal(_usage(sub)), ".SH DESCRIPTION", *literal(_body(sub))]
    if names[1:]:
        out += [".PP", roff(f"Also spelled: {', '.join(f'sdctr {n}' for n in names[1:])}.")]
    nested = verbs(sub, f"{verb} ")
    if nested:
        out += [".SH COMMANDS"]
        for name, p, nested_help in nested:
            out += [f".SS {roff('sdctr ' + name)}", roff(nested_help), *literal(_usage(p)),
                    *literal(_body(p))]
    refs = [("sdctr", "1")]
    if any(o.yaml_key and o.flags and o.flags[-1] in sub._option_string_actions for o in options.OPTIONS):
        refs.append(("sdctr-containers", "5"))  # run's flags are a declared container's keys
    return "\n".join([*out, *see_also(refs)]) + "\n"


# --- section 5 ----------------------------------------------------------------------------------

def shipped_config_keys(text: str) -> dict[str, tuple[str, str]]:
    """'section.key' -> (what the comments above it say, the example value) from the shipped
    configuration, whose keys are commented out: `#network:`, `#  # the default...`, `#  subnet: ...`."""
    keys: dict[str, tuple[str, str]] = {}
    section, notes = "", []
    for line in text.splitlines():
        note = re.fullmatch(r"#\s+# ?(.*)", line)
        key = re.fullmatch(r"#((?:  )*)([A-Za-z_][\w.-]*):\s*(.*)", line)
        if note:
            notes.append(note.group(1))
        elif key:
            depth = len(key.group(1)) // 2
            if depth == 0:
                section = key.group(2)
            elif depth == 1:
                keys[f"{section}.{key.group(2)}"] = (" ".join(notes), key.group(3))
            notes = []
        else:
            notes = []
    return keys


def config_page() -> str:
    """sdctr.yaml(5): every setting config.py reads, with its default, described by the shipped
    file's comments; a setting the file does not describe stops the build."""
    text = SHIPPED_CONFIG.read_text()
    described = shipped_config_keys(text)
    defaults = config.Config()
    out = header("sdctr.yaml", 5, "sdctr's settings")
    out += [".SH SYNOPSIS", r"\fI/etc/sdctr/sdctr.yaml\fR", ".SH DESCRIPTION",
            roff("The machine's settings for sdctr(1), in YAML. A missing key, or the whole file missing, "
                 "means the default. The environment variable SDCTR_CONFIG names another file; declared "
                 "containers are files of their own (sdctr-containers(5))."), ".SH SETTINGS"]
    for section in config.Config._fields:
        out += [f".SS {section}"]
        for key in getattr(defaults, section)._fields:
            name = f"{section}.{key}"
            if name not in described or not described[name][0]:
                raise SystemExit(f"manpage.py: {SHIPPED_CONFIG} does not describe {name} "
                                 "(a comment above it)")
            note, example = described[name]
            default = getattr(getattr(defaults, section), key)
            shown = str(default) if default not in ("", {}, ()) else "none"
            out += [".TP", rf"\fB{roff(key)}\fR", roff(note) + ".", ".br", roff(f"Default: {shown}.")]
            if example:
                out[-1] += " " + roff(f"Example: {example}")
    out += [".SH EXAMPLE", roff("The file the package installs, every key commented out:"), *literal(text),
            ".SH FILES", r"\fI/etc/sdctr/sdctr.yaml\fR"]
    out += see_also([("sdctr", "1"), ("sdctr-containers", "5")])
    return "\n".join(out) + "\n"


_KINDS = {options.VALUE: "a string or a number", options.SWITCH: "true or false",
          options.LIST: "a list (one item may be written alone)",
          options.WORDS: "a list of words, or a string split as a shell would",
          options.SETTINGS: "a mapping of systemd settings (KEY: value, or KEY: [values])",
          options.MAPPING: "a mapping of the keys named above (test, interval, timeout, retries, "
                           "start_period), as Compose writes it"}


def containers_page(parser: argparse.ArgumentParser) -> str:
    """sdctr-containers(5): a declared container's keys, from sdctr.options.OPTIONS."""
    run = dict((n, p) for n, p, _, _ in commands(parser)).get("run")
    out = header("sdctr-containers", 5, "containers declared in YAML, started by systemd")
    out += [".SH SYNOPSIS", r"\fI/etc/sdctr/containers/NAME.yaml\fR", ".SH DESCRIPTION",
            roff("Each file declares one container, named by the file (web.yaml: web), with the keys of "
                 "the flags of sdctr run (sdctr-run(1)), checked by the same parsers. At boot and at "
                 "every systemctl daemon-reload, the generator sdctr-generator turns each file into the "
                 "unit ctr-NAME.service, wanted by multi-user.target; a declared container runs "
                 "detached. A file with an unknown key or a wrong type is reported in the journal with "
                 "its file, line and key; the other containers start."),
            ".SH KEYS"]
    for option in options.OPTIONS:
        if not option.yaml_key:
            continue
        flag = ", ".join(option.flags) if option.flags else (option.metavar or option.dest)
        what = option.help or f"{option.metavar or option.dest} of sdctr run"
        if option.dest in ("env", "labels"):  # _convert takes {KEY: value} for these
            kind = "a list of KEY=VALUE, or a mapping"
        else:
            kind = _KINDS[option.kind]
        choices = f"; one of {', '.join(option.choices)}" if option.choices else ""
        title = (rf"\fB{roff(option.yaml_key)}\fR (sdctr run \fB{roff(flag)}\fR)" if option.flags
                 else rf"\fB{roff(option.yaml_key)}\fR (a declared container's own key)")
        out += [".TP", title,
                roff(what) + ".", ".br", roff(f"Value: {kind}{choices}.")]
    cli_only = [o for o in options.OPTIONS if not o.yaml_key and o.flags
                and (run is None or o.flags[-1] in run._option_string_actions)]
    if cli_only:
        out += [".PP", roff("No key: " + ", ".join(o.flags[-1] for o in cli_only)
                            + " (the name is the file's; a declared container runs detached).")]
    out += [".SH EXAMPLE", *literal('image: nginx:latest\ncommand: nginx -g "daemon off;"\nmemory: 256m\n'
                                    'cpu_shares: 512\nrestart: always\nnetwork: bridge\nports: ["8080:80"]\n'
                                    "env: {TZ: UTC}\n"),
            ".PP", roff("Then: systemctl daemon-reload; systemctl start ctr-web; "
                 "sdctr generate systemd web prints the unit."),
            ".SH FILES", r"\fI/etc/sdctr/containers/NAME.yaml\fR,",
            r"\fI/usr/lib/systemd/system-generators/sdctr-generator\fR"]
    out += see_also([("sdctr", "1"), ("sdctr-run", "1"), ("sdctr-generate", "1"), ("sdctr.yaml", "5"),
                     ("systemd.generator", "7")])
    return "\n".join(out) + "\n"


# --- completion ---------------------------------------------------------------------------------

def _paths(parser: Parser, prefix: str = "") -> list[tuple[str, list[str], Parser]]:
    """(canonical path, the words that lead to it from the path before, parser) for every verb."""
    found = []
    for name, sub, names, _ in commands(parser):
        found.append((prefix + name, [prefix + n for n in names], sub))
        found += _paths(sub, prefix + name + " ")
    return found


def _dq(word: str) -> str:
    return f'"{word}"'


def _walk(shell: str, parser: argparse.ArgumentParser) -> list[str]:
    """The shell loop that finds the verb path typed so far (options and arguments skipped)."""
    first, words = ("1", "COMP_WORDS") if shell == "bash" else ("2", "words")
    last = "COMP_CWORD" if shell == "bash" else "CURRENT"
    return [f"    for ((i = {first}; i < {last}; i++)); do",
            f'        w=${{{words}[i]}}; [[ $w == -* ]] && continue',
            '        case "${verbs:+$verbs }$w" in',
            *[f'            {"|".join(map(_dq, spellings))}) verbs="{path}" ;;'
              for path, spellings, _ in _paths(parser)],
            "        esac",
            "    done"]


def bash(parser: argparse.ArgumentParser) -> str:
    cases = []
    for path, _, sub in [("", [], parser), *_paths(parser)]:
        words = [f for f, _ in option_words(sub)] + [n for _, _, names, _ in commands(sub) for n in names]
        cases.append(f'        "{path}") words="{" ".join(words)}" ;;')
    return "\n".join([
        "# bash completion for sdctr: generated from its argparse parser (packaging/manpage.py)",
        "_sdctr() {",
        '    local cur=${COMP_WORDS[COMP_CWORD]} verbs="" w words i',
        *_walk("bash", parser),
        '    case "$verbs" in', *cases, '        *) words="" ;;', "    esac",
        '    COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        "}",
        "complete -o default -F _sdctr sdctr", ""])


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def zsh(parser: argparse.ArgumentParser) -> str:
    """A #compdef function: autoloaded from site-functions, or sourced (then it calls compdef)."""
    cases = []
    for path, _, sub in [("", [], parser), *_paths(parser)]:
        cmds = [_zsh_quote(f"{n.replace(':', chr(92) + ':')}:{h}")
                for _, _, names, h in commands(sub) for n in names]
        opts = [_zsh_quote(f"{f}:{h}") for f, h in option_words(sub)]
        cases.append(f'        "{path}") cmds=({" ".join(cmds)}); opts=({" ".join(opts)}) ;;')
    return "\n".join([
        "#compdef sdctr",
        "# zsh completion for sdctr: generated from its argparse parser (packaging/manpage.py)",
        "_sdctr() {",
        '    local verbs="" w i',
        "    local -a cmds opts",
        *_walk("zsh", parser),
        '    case "$verbs" in', *cases, "        *) cmds=(); opts=() ;;", "    esac",
        "    if [[ ${words[CURRENT]} == -* ]]; then",
        "        _describe -t options option opts",
        "    elif (( ${#cmds} )); then",
        "        _describe -t commands command cmds",
        "    else",
        "        _files",
        "    fi",
        "}",
        'if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then _sdctr "$@"; else compdef _sdctr sdctr; fi',
        ""])


# --- all of it ----------------------------------------------------------------------------------

def write_all(out: Path) -> list[Path]:
    parser = build_parser()
    pages = {Path("man1/sdctr.1"): man(parser)}
    for verb in top_verbs(parser):
        pages[Path(f"man1/sdctr-{verb}.1")] = verb_page(parser, verb)
    pages[Path("man5/sdctr.yaml.5")] = config_page()
    pages[Path("man5/sdctr-containers.5")] = containers_page(parser)
    pages[Path("sdctr.bash")] = bash(parser)
    pages[Path("_sdctr")] = zsh(parser)
    for path, text in pages.items():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_text(text)
    return [out / p for p in pages]


if __name__ == "__main__":
    if sys.argv[1] == "all":
        write_all(Path(sys.argv[2]))
    else:
        sys.stdout.write({"man": man, "bash": bash, "zsh": zsh}[sys.argv[1]](build_parser()))
