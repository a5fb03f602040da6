"""Command line: verbs and flags as Docker spells them; no side effects of its own.

Parsing turns arguments into specs; each verb is a small function that hands the spec to the
module downstream. Import cost matters here (this is the hot path of ``sdctr run`` and of the
hooks), so verbs import what they need inside their own function.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sdctr import __version__
from sdctr.log import EXIT_SDCTR, SdctrError, debugging, error, set_debug


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage; Docker exits 125, so do we, with one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise SdctrError(message, hint=f"see '{self.prog} --help'")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sdctr",
        description="A daemonless container manager: every container is a systemd unit ctr-<id>.",
    )
    parser.add_argument("--version", action="version", version=f"sdctr version {__version__}")
    parser.add_argument("--debug", action="store_true", help="echo external commands, show tracebacks")
    parser.add_argument("--root", metavar="DIR",
                        help="state root instead of /var/lib/sdctr (also SDCTR_ROOT)")
    parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        set_debug(args.debug)
        if args.verb is None:
            parser.print_help()
            return 0
        handler = args.handler
        return int(handler(args) or 0)
    except SdctrError as e:
        if debugging():
            import traceback

            traceback.print_exc()
        error(str(e), e.hint)
        return e.status
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the last line of defence: one line, traceback only with --debug
        if debugging():
            raise
        error(f"internal error: {e.__class__.__name__}: {e}", hint="run again with --debug for a traceback")
        return EXIT_SDCTR


if __name__ == "__main__":
    sys.exit(main())
