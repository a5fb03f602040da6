"""`--help` of every verb (issue 14): a one-line description, and text for every option. Walks
the whole parser, so a verb or flag added without help fails here."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from sdctr.cli.parser import build_parser


def verbs(parser: argparse.ArgumentParser,
          prefix: str = "sdctr") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from verbs(sub, f"{prefix} {name}")


def test_every_verb_has_a_description_and_every_option_its_help() -> None:
    missing = []
    for name, parser in verbs(build_parser()):
        description = (parser.description or "").strip()
        if not description or "\n" in description:
            missing.append(f"{name}: no one-line description")
        for action in parser._actions:
            if action.option_strings and action.help != argparse.SUPPRESS and not (action.help or "").strip():
                missing.append(f"{name} {'/'.join(action.option_strings)}: no help")
    assert not missing, "\n".join(missing)


def test_a_verbs_help_shows_its_description() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["exec"].format_help()
    assert "run a command in a running container" in text
    assert "-d, --detach" in text and "return at once" in text


def test_the_hot_verbs_alone_keep_their_help() -> None:
    """`run` builds its parser alone (build_parser(only=...)): the same descriptions."""
    for verb in ("run", "create"):
        parser = build_parser(only=verb)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        assert (sub.choices[verb].description or "").strip(), verb
