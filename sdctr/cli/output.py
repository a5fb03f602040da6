"""How the verbs print, as Docker prints: tables, the Go-template subset of --format, times as
"3 hours ago". One home for output formatting; sizes are sdctr.image.progress.human_size, which
the pull's progress shares (and image/ imports nothing from cli/)."""

from __future__ import annotations

import json
import time

TYPE_CHECKING = False  # typing costs ~3 ms to import, and run needs none of it
if TYPE_CHECKING:
    from typing import Any


def table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header, *rows]:
        print("   ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def clip(text: str, width: int) -> str:
    """A command as `docker ps` shows it: quoted, cut to `width` with an ellipsis."""
    return json.dumps(text if len(text) <= width else text[: width - 1] + "…", ensure_ascii=False)


def print_docs(docs: list[dict[str, Any]], fmt: str | None) -> None:
    if fmt:
        for d in docs:
            print(render_format(fmt, d))
    else:
        print(json.dumps(docs, indent=4))


def render_format(fmt: str, doc: dict[str, Any]) -> str:
    """One document through a Docker --format template (sdctr.cli.template: every verb's one
    engine)."""
    from sdctr.cli.template import Template

    return Template(fmt).render(doc)


def go_text(value: Any) -> str:
    """A value as Go's templates print it: [a b], map[k:v], true, <nil>."""
    from sdctr.cli.template import _text

    return _text(value)


def human_duration(s: float) -> str:
    """go-units' HumanDuration, which Docker prints: minutes cut, hours rounded."""
    minutes, hours = int(s / 60), int(s / 3600 + 0.5)
    steps = (
        (s < 1, "Less than a second"),
        (int(s) == 1, "1 second"),
        (s < 60, f"{int(s)} seconds"),
        (minutes == 1, "About a minute"),
        (minutes < 60, f"{minutes} minutes"),
        (hours == 1, "About an hour"),
        (hours < 48, f"{hours} hours"),
        (hours < 24 * 7 * 2, f"{hours // 24} days"),
        (hours < 24 * 30 * 2, f"{hours // 24 // 7} weeks"),
        (hours < 24 * 365 * 2, f"{hours // 24 // 30} months"),
    )
    return next((text for sure, text in steps if sure), f"{int(s / 3600) // 24 // 365} years")


def human_ago(iso: str, now: float | None = None) -> str:
    """An RFC 3339 time as Docker shows it: "3 hours ago" (go-units' HumanDuration)."""
    import datetime

    try:
        then = datetime.datetime.fromisoformat(_py39_isoformat(iso))
    except ValueError:
        return iso or "N/A"
    if then.tzinfo is None:
        then = then.replace(tzinfo=datetime.timezone.utc)
    return human_duration((now if now is not None else time.time()) - then.timestamp()) + " ago"


def _py39_isoformat(iso: str) -> str:
    """What Python 3.9's fromisoformat reads: no "Z", at most microseconds."""
    import re

    iso = iso.strip().replace("Z", "+00:00")
    return re.sub(r"(\.\d{6})\d+", r"\1", iso)
