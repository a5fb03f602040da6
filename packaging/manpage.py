"""sdctr(1) and bash completion, generated from the argparse parser at build time (the spec's
%build; nothing here is imported at run time):

    PYTHONPATH=. python3 packaging/manpage.py man  > sdctr.1
    PYTHONPATH=. python3 packaging/manpage.py bash > sdctr.bash
"""

from __future__ import annotations

import argparse
import os
import sys

from sdctr import __version__
from sdctr.cli.parser import build_parser


def verbs(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command, nested ones (`system gc`) included, in the parser's order."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if sub not in [p for _, p in found]:  # aliases name the same parser
                    found.append((prefix + name, sub))
                    found += verbs(sub, prefix + name + " ")
    return found


def roff(text: str) -> str:
    lines = [line.replace("\\", "\\e") for line in text.rstrip().splitlines()]
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in lines)


def man(parser: argparse.ArgumentParser) -> str:
    os.environ["COLUMNS"] = "80"
    # reproducible: the page carries the version, not a build date
    out = [f'.TH SDCTR 1 "" "sdctr {__version__}" "User Commands"', ".SH NAME",
           "sdctr \\- " + roff(parser.description or "a daemonless container manager").split("\n")[0],
           ".SH SYNOPSIS", ".nf", roff(parser.format_usage().removeprefix("usage: ")), ".fi",
           ".SH OPTIONS", ".nf", roff(parser.format_help()), ".fi", ".SH COMMANDS"]
    for name, sub in verbs(parser):
        out += [f".SS sdctr {name}", ".nf", roff(sub.format_help()), ".fi"]
    out += [".SH FILES", "/etc/sdctr/sdctr.yaml, /etc/sdctr/containers/*.yaml, /var/lib/sdctr, /run/sdctr",
            ".SH SEE ALSO", "systemd.unit(5), systemctl(1), journalctl(1)"]
    return "\n".join(out) + "\n"


def bash(parser: argparse.ArgumentParser) -> str:
    cases = []
    for name, sub in [("", parser), *verbs(parser)]:
        words = [s for a in sub._actions for s in a.option_strings]
        words += [n for a in sub._actions if isinstance(a, argparse._SubParsersAction) for n in a.choices]
        cases.append(f'        "{name}") words="{" ".join(words)}" ;;')
    return "\n".join([
        "# bash completion for sdctr: generated from its argparse parser (packaging/manpage.py)",
        "_sdctr() {",
        '    local cur=${COMP_WORDS[COMP_CWORD]} path="" w words i',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        w=${COMP_WORDS[i]}; [[ $w == -* ]] && continue',
        '        case "${path:+$path }$w" in', *[c.split(")")[0] + ") path=${path:+$path }$w ;;"
                                               for c in cases[1:]], "        esac",
        "    done",
        '    case "$path" in', *cases, '        *) words="" ;;', "    esac",
        '    COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        "}",
        "complete -o default -F _sdctr sdctr", ""])


if __name__ == "__main__":
    sys.stdout.write({"man": man, "bash": bash}[sys.argv[1]](build_parser()))
