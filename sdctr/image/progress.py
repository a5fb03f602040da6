"""What a pull shows while it runs, as `docker pull` shows it.

The registry client reports Events (Docker's JSON messages: a status, the id of the layer or tag it
is about, and byte counts while downloading). On a terminal they become one line per id, rewritten
in place; elsewhere (a log, a pipe) each change of status becomes a plain line and the byte counts
are left out. About 40 lines of ANSI (cursor up, erase line) do this; `rich.progress` would cost
57 ms of imports (measured here) and three packages (rich, pygments, markdown-it-py).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

from sdctr.record import Record

TYPE_CHECKING = False  # typing costs ~3 ms to import, and `run` loads human_size from here
if TYPE_CHECKING:
    from typing import TextIO

DOWNLOADING = "Downloading"
_UP = "\x1b[{}A"  # cursor up N lines
_ERASE_LINE = "\r\x1b[2K"
_BAR_MIN_WIDTH = 110  # as Docker: on narrower terminals only the numbers, no bar


class Event(Record):
    status: str
    id: str = ""  # a short layer digest or a tag; "" for lines about the whole pull
    current: int = 0  # bytes received, while DOWNLOADING
    total: int = 0

    @property
    def line(self) -> str:
        return f"{self.id}: {self.status}" if self.id else self.status

    def text(self, width: int) -> str:
        """The status with its progress, as Docker's JSONProgress renders it."""
        if self.status != DOWNLOADING or self.current <= 0:
            return self.line
        if self.total <= 0:
            return f"{self.line} {human_size(self.current, digits=4):>8}"
        bar = ""
        if width >= _BAR_MIN_WIDTH:
            filled = min(50, self.current * 50 // self.total)
            bar = f"[{'=' * filled}>{' ' * (50 - filled)}] "
        return f"{self.line} {bar}{human_size(self.current, digits=4):>8}/{human_size(self.total, digits=4)}"


def human_size(n: float, binary: bool = False, *, digits: int | None = None) -> str:
    """A size as Docker's go-units writes it: decimal units with 3 significant digits (`docker
    images`, `history`; a pull's progress asks for 4, as units.HumanSize has them), or binary units
    (KiB, MiB) with 4 (units.BytesSize, for `stats`)."""
    step, units = ((1024, ("B", "KiB", "MiB", "GiB", "TiB")) if binary
                   else (1000, ("B", "kB", "MB", "GB", "TB")))
    digits = digits or (4 if binary else 3)
    for unit in units[:-1]:
        if n < step:
            return f"{n:.{digits}g}{unit}"
        n /= step
    return f"{n:.{digits}g}{units[-1]}"


def plain_lines(out: TextIO) -> Callable[[Event], None]:
    """One line per change of status: byte counts would flood a log."""
    def show(event: Event) -> None:
        if event.status != DOWNLOADING:
            print(event.line, file=out, flush=True)
    return show


class TerminalBoard:
    """One line per id, rewritten in place; byte counts redraw at most once per ``interval``.

    The cursor always rests just below the board, so an interrupted pull leaves a tidy screen. A
    line without an id (``Digest:``, ``Status:``) goes below the board, which then starts afresh."""

    def __init__(self, out: TextIO, width: int, *, interval: float = 0.1,
                 clock: Callable[[], float] = time.monotonic):
        self.out, self.width, self.interval, self.clock = out, width, interval, clock
        self.rows: dict[str, Event] = {}
        self.drawn = 0  # board lines on the screen
        self.last_draw = -math.inf
        self.stale = False  # a byte count not drawn yet

    def __call__(self, event: Event) -> None:
        if not event.id:
            self.close()
            self.out.write(event.line + "\n")
            self.rows, self.drawn = {}, 0
        else:
            self.rows[event.id] = event
            if event.status == DOWNLOADING and self.clock() - self.last_draw < self.interval:
                self.stale = True
                return
            self._draw()
        self.out.flush()

    def close(self) -> None:
        if self.stale:
            self._draw()
            self.out.flush()

    def _draw(self) -> None:
        parts = [_UP.format(self.drawn)] if self.drawn else []
        # one column short of the width: a line that fills it wraps on some terminals
        parts += [f"{_ERASE_LINE}{e.text(self.width)[: self.width - 1]}\n" for e in self.rows.values()]
        self.out.write("".join(parts))
        self.drawn, self.last_draw, self.stale = len(self.rows), self.clock(), False


@contextlib.contextmanager
def view(out: TextIO, *, quiet: bool = False) -> Iterator[Callable[[Event], None] | None]:
    """The view that fits ``out``: none (quiet), the board (a terminal) or plain lines."""
    if quiet:
        yield None
    elif out.isatty():
        import shutil

        board = TerminalBoard(out, shutil.get_terminal_size().columns)
        try:
            yield board
        finally:
            board.close()
    else:
        yield plain_lines(out)
