"""`sdctr logs`: the container's lines from the journal, matched by the unit that wrote them
(so systemd's own messages about the unit stay out, and the lines of every run are found:
the unit name is the container's for life). Works on systemd without LogExtraFields too."""

from __future__ import annotations

import datetime
import json
import sys

from sdctr.external import popen
from sdctr.log import SdctrError
from sdctr.spec import ContainerSpec


def journalctl_argv(spec: ContainerSpec, follow: bool, tail: str | None, since: str | None) -> list[str]:
    argv = ["journalctl", "--no-pager", "-q", "-o", "json", "--output-fields=MESSAGE",
            f"_SYSTEMD_UNIT={spec.unit}"]
    if follow:
        argv.append("--follow")
    if tail is not None and tail != "all":
        if not tail.isdigit():
            raise SdctrError(f"--tail {tail!r} is not a number or 'all'")
        argv += ["-n", tail]
    elif follow or tail == "all":
        argv += ["-n", "all"]
    if since:
        argv += ["--since", since]
    return argv


def show(spec: ContainerSpec, follow: bool, tail: str | None, since: str | None,
         timestamps: bool) -> int:
    with popen(journalctl_argv(spec, follow, tail, since)) as proc:
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                sys.stdout.buffer.write(format_entry(json.loads(raw), timestamps))
                sys.stdout.buffer.flush()
        except KeyboardInterrupt:
            proc.terminate()
        except BrokenPipeError:
            proc.terminate()
    return 0 if proc.returncode in (0, -15, None) else 125


def format_entry(entry: dict[str, object], timestamps: bool) -> bytes:
    message = entry.get("MESSAGE", "")
    # journald stores a message that is not valid UTF-8 as an array of bytes
    data = bytes(message) if isinstance(message, list) else str(message).encode()
    if timestamps:
        usec = int(str(entry.get("__REALTIME_TIMESTAMP", "0")))
        ts = datetime.datetime.fromtimestamp(usec / 1e6, datetime.timezone.utc)
        data = ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ ").encode() + data
    return data + b"\n"
