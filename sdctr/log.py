"""User-facing messages: one line for an error a person can act on, tracebacks only with --debug.

Exit statuses follow ``docker run``: 125 for sdctr's own errors, 126 when the command cannot be
invoked, 127 when it is not found.
"""

from __future__ import annotations

import sys

EXIT_SDCTR = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127

_debug = False


class SdctrError(Exception):
    """An error meant for the user: its message is printed as one line, with an optional hint."""

    def __init__(self, message: str, hint: str | None = None, status: int = EXIT_SDCTR):
        super().__init__(message)
        self.hint = hint
        self.status = status


class InitFailed(SdctrError):
    """The container's init failed before the command ran and said why (its own `sdctr: error:`
    line, in the unit's journal): that line is the error, as Docker's one line; `shown` when the
    init wrote it to the caller's terminal too (a foreground run), so nothing more is printed."""

    shown = False


def set_debug(on: bool) -> None:
    global _debug
    _debug = on


def debugging() -> bool:
    return _debug


def debug(message: str) -> None:
    if _debug:
        print(message, file=sys.stderr, flush=True)


def error(message: str, hint: str | None = None) -> None:
    print(f"sdctr: error: {message}", file=sys.stderr)
    if hint:
        print(f"sdctr: hint: {hint}", file=sys.stderr)


def describe(e: OSError) -> str:
    """One line: sdctr.linux already names the call in strerror; os names the file."""
    if e.filename is not None:
        return f"{e.filename}: {e.strerror}"
    return e.strerror or str(e)


def report(e: SdctrError | OSError) -> int:
    """The one line (and hint) for a failure that ends the init or exec's helper; their exit
    status: the SdctrError's own, else EXIT_SDCTR."""
    if isinstance(e, SdctrError):
        error(str(e), e.hint)
        return e.status
    error(describe(e))
    return EXIT_SDCTR
