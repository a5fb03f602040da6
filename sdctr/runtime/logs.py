"""`sdctr logs`: the container's lines from the journal, matched by the unit that wrote them
(so systemd's own messages about the unit stay out, and the lines of every run are found:
the unit name is the container's for life). Works on systemd without LogExtraFields too."""

from __future__ import annotations

import datetime
import json
import math
import re
import sys
import time

from sdctr.external import popen
from sdctr.init.journal import FOREGROUND_FIELD
from sdctr.log import SdctrError
from sdctr.spec import ContainerSpec

TYPE_CHECKING = False  # typing costs ~3 ms to import
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable


def journalctl_argv(spec: ContainerSpec, follow: bool, tail: str | None, since: str | None,
                    until: str | None = None) -> list[str]:
    argv = ["journalctl", "--no-pager", "-q", "-o", "json", "--output-fields=MESSAGE,PRIORITY",
            # the container's own lines, or (root's) the copy of a foreground run's (sdctr.init.journal)
            f"_SYSTEMD_UNIT={spec.unit}", "+", f"{FOREGROUND_FIELD}={spec.id}", "_UID=0"]
    if follow:
        argv.append("--follow")
    if tail is not None and tail != "all":
        if not tail.isdigit():
            raise SdctrError(f"--tail {tail!r} is not a number or 'all'")
        argv += ["-n", tail]
    elif follow or tail == "all":
        argv += ["-n", "all"]
    if since:
        argv += ["--since", f"@{math.floor(parse_time('--since', since))}"]
    if until:
        argv += ["--until", f"@{math.ceil(parse_time('--until', until))}"]
    return argv


_GO_DURATION = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_time(field: str, value: str, now: float | None = None) -> float:
    """Docker's --since/--until forms, as Unix seconds: a Go duration before now (`2s`, `10m`,
    `1h30m`), Unix seconds (`1700000000`, `1700000000.5`), RFC 3339 (`2026-01-02T10:00:00Z`,
    with an offset, or without one: local time), or a date (`2026-01-02`)."""
    now = time.time() if now is None else now
    text = value.strip()
    if text and _GO_DURATION.sub("", text) == "":
        parts = re.findall(r"([\d.]+)(ns|us|µs|ms|s|m|h)", text)
        return now - sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    iso = re.sub(r"(\.\d{6})\d+", r"\1", iso)  # Go prints nanoseconds; Python takes micro
    try:
        return datetime.datetime.fromisoformat(iso).timestamp()
    except ValueError:
        raise SdctrError(f"{field} {value!r} is not a time",
                         hint="examples: 10m, 2h30m, 2026-01-02T10:00:00Z, 1767348000") from None


def show(spec: ContainerSpec, follow: bool, tail: str | None, since: str | None,
         timestamps: bool, *, until: str | None = None,
         running: Callable[[], bool] | None = None) -> int:
    """The lines; with `follow`, until interrupted or, given `running`, until the container
    has stopped (what journald still had to write arriving first), as `docker logs -f` ends."""
    with popen(journalctl_argv(spec, follow, tail, since, until)) as proc:
        assert proc.stdout is not None
        if follow and running is not None:
            import threading

            threading.Thread(target=_end_with_container, args=(proc, running), daemon=True).start()
        try:
            for raw in proc.stdout:
                write_entry(json.loads(raw), timestamps)
        except KeyboardInterrupt:
            proc.terminate()
        except BrokenPipeError:
            proc.terminate()
    return 0 if proc.returncode in (0, -15, None) else 125


def _end_with_container(proc: subprocess.Popen[bytes], running: Callable[[], bool],
                        poll: float = 0.25, settle: float = 0.5) -> None:
    while proc.poll() is None:
        if not running():
            time.sleep(settle)  # the last lines: journald reads the stream a moment after
            proc.terminate()
            return
        time.sleep(poll)


def write_entry(entry: dict[str, object], timestamps: bool) -> None:
    """To our stderr what the container wrote on its stderr (sdctr.init.journal's priority-3
    stream, as Docker's journald driver marks it), the rest to stdout, as `docker logs` does."""
    out = sys.stderr.buffer if is_stderr(entry) else sys.stdout.buffer
    out.write(format_entry(entry, timestamps))
    out.flush()


def is_stderr(entry: dict[str, object]) -> bool:
    return str(entry.get("PRIORITY", "")) == "3"


def format_entry(entry: dict[str, object], timestamps: bool) -> bytes:
    message = entry.get("MESSAGE", "")
    # journald stores a message that is not valid UTF-8 as an array of bytes
    data = bytes(message) if isinstance(message, list) else str(message).encode()
    if timestamps:
        usec = int(str(entry.get("__REALTIME_TIMESTAMP", "0")))
        ts = datetime.datetime.fromtimestamp(usec / 1e6, datetime.timezone.utc)
        data = ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ ").encode() + data
    return data + b"\n"
