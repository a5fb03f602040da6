"""`events`: what happened to containers, from the journal, where systemd already writes it.

systemd logs each job and exit of a unit with a catalogued MESSAGE_ID (start done, main process
exited, deactivated, stop done), so a unit's start/die/stop need nothing of ours, and they are
there for a container started by `systemctl start` as much as by `sdctr start`. What only sdctr
knows (create, destroy, pause, unpause, rename, commit) sdctr writes itself: one journal entry
with SDCTR_EVENT=<action> (the native protocol: one datagram, no process). Both are read with one
journalctl, so --since/--until and following are journald's.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from typing import Any

from sdctr.log import debug

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdctr.spec import ContainerSpec

JOURNAL_SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "sdctr"
# systemd's catalog (src/systemd/sd-messages.h)
_UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"
_UNIT_STOPPED = "9d1aaa27d60140bd96365438aad20286"
_UNIT_STOPPING = "de5b426a63be47a7b6ac3eaac82e2f6f"
_UNIT_PROCESS_EXIT = "98e322203f7a4ed290d09fe03c09fe15"
_UNIT_SUCCESS = "7ad2d189f7e94e70a38c781354912448"
_UNIT_FAILURE_RESULT = "d9b373ed55a64feb8242e02dbe79a49c"
_DESCRIPTION = re.compile(r"sdctr container (\S+) \((.*?)\)")
FILTERS = ("container", "event", "image", "type")
_CAMEL = {"OLDNAME": "oldName", "EXITCODE": "exitCode"}  # journal field names are upper case


def emit(spec: ContainerSpec, action: str, **attributes: str) -> None:
    """One event of sdctr's own into the journal; never fails the verb that emits it."""
    from sdctr import linux

    fields = {"MESSAGE": f"container {action} {spec.id} ({spec.name})", "SYSLOG_IDENTIFIER": IDENTIFIER,
              "SDCTR_EVENT": action, "SDCTR_CONTAINER_ID": spec.id, "SDCTR_CONTAINER_NAME": spec.name,
              "SDCTR_CONTAINER_IMAGE": spec.image, "UNIT": spec.unit,
              **{f"SDCTR_ATTR_{k.upper()}": v for k, v in attributes.items()}}
    data = "".join(f"{k}={str(v).replace(chr(10), ' ')}\n" for k, v in fields.items()).encode()
    try:
        s = linux.datagram_socket(linux.AF_UNIX)
        try:
            s.sendto(data, JOURNAL_SOCKET)
        finally:
            s.close()
    except OSError as e:  # no journald (a test root, a chroot): the event is lost, said under --debug
        debug(f"event {action} of {spec.name} not journaled: {e}")


def journalctl_argv(since: float | None, until: float | None, follow: bool) -> list[str]:
    argv = ["journalctl", "--no-pager", "-q", "-o", "json", "_PID=1", "+", f"SYSLOG_IDENTIFIER={IDENTIFIER}"]
    if since is not None:
        argv += ["--since", f"@{int(since)}"]
    if until is not None:
        argv += ["--until", f"@{int(until) + 1}"]
    if follow:
        argv.append("--follow")
    if since is None:
        argv += ["-n", "0"]  # as Docker: only what happens from now on
    return argv


def parse(entries: Iterator[dict[str, Any]],
          known: dict[str, tuple[str, str, str]]) -> Iterator[dict[str, Any]]:
    """Docker's event documents from journal entries. `known`: unit -> (id, name, image) of the
    containers sdctr has records of; others learn their name from systemd's messages (the unit's
    Description names the container) as the stream goes."""
    last: dict[str, str] = {}  # unit -> its last action: systemd may report one exit twice
    for e in entries:
        unit = str(e.get("UNIT") or "")
        if not unit.startswith("ctr-"):
            continue
        action, attrs = _action(e)
        if action is None:
            continue
        if "SDCTR_CONTAINER_ID" in e:
            known[unit] = (e["SDCTR_CONTAINER_ID"], e.get("SDCTR_CONTAINER_NAME", ""),
                           e.get("SDCTR_CONTAINER_IMAGE", ""))
        m = _DESCRIPTION.search(str(e.get("MESSAGE") or ""))
        if m and unit not in known:
            known[unit] = (unit[4:].split(".", 1)[0], m.group(1), m.group(2))
        if action == "die" and last.get(unit) == "die":
            continue
        if action == "die" and e.get("MESSAGE_ID") == _UNIT_SUCCESS and last.get(unit) != "stopping":
            attrs = {"exitCode": "0"}  # deactivated on its own, successfully: the command exited 0
        previous, last[unit] = last.get(unit), action
        if action == "stopping" or (action == "stop" and previous == "stop"):
            continue
        cid, name, image = known.get(unit, (unit[4:].split(".", 1)[0], "", ""))
        nano = int(e.get("__REALTIME_TIMESTAMP", 0)) * 1000
        attributes = {**({"image": image} if image else {}), **({"name": name} if name else {}), **attrs}
        yield {"status": action, "id": cid, "from": image, "Type": "container", "Action": action,
               "Actor": {"ID": cid, "Attributes": attributes}, "scope": "local",
               "time": nano // 10**9, "timeNano": nano}


def _action(e: dict[str, Any]) -> tuple[str | None, dict[str, str]]:  # noqa: PLR0911 - one per message
    if e.get("SDCTR_EVENT"):
        names = {k: k[len("SDCTR_ATTR_"):] for k in e if k.startswith("SDCTR_ATTR_")}
        return str(e["SDCTR_EVENT"]), {_CAMEL.get(n, n.lower()): str(e[k]) for k, n in names.items()}
    mid = e.get("MESSAGE_ID")
    if mid == _UNIT_STARTED and e.get("JOB_RESULT") == "done":
        return "start", {}
    if mid == _UNIT_PROCESS_EXIT:
        status = str(e.get("EXIT_STATUS") or "")
        if e.get("EXIT_CODE") in ("killed", "dumped"):  # a signal's name: as a shell reports it
            import signal

            with contextlib.suppress(ValueError, KeyError):
                status = str(128 + int(signal.Signals[f"SIG{status}"] if not status.isdigit() else status))
        return "die", {"exitCode": status} if status.isdigit() else {}
    if mid == _UNIT_STOPPING and e.get("JOB_TYPE") == "stop":
        return "stopping", {}  # not shown: it tells a stop's exit from a command's own
    if mid in (_UNIT_SUCCESS, _UNIT_FAILURE_RESULT):
        return "die", {}
    if mid == _UNIT_STOPPED and e.get("JOB_TYPE") == "stop":
        return "stop", {}
    return None, {}


def matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    attrs = event["Actor"]["Attributes"]

    def any_of(key: str, test: Any) -> bool:
        return key not in filters or any(test(v) for v in filters[key])

    return (any_of("container", lambda v: v in (attrs.get("name"), event["id"]) or
                   (len(v) >= 3 and event["id"].startswith(v)))
            and any_of("event", lambda v: v == event["Action"])
            and any_of("image", lambda v: v in (attrs.get("image"), event["from"]) or
                       f"{v}:latest" == attrs.get("image"))
            and any_of("type", lambda v: v == "container"))


def text(event: dict[str, Any]) -> str:
    """Docker's line: `2026-01-02T10:00:00.123456789Z container die ID (exitCode=3, image=..., name=...)`."""
    nano = event["timeNano"]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(nano // 10**9)) + f".{nano % 10**9:09d}Z"
    attrs = ", ".join(f"{k}={v}" for k, v in sorted(event["Actor"]["Attributes"].items()))
    return f"{stamp} container {event['Action']} {event['id']} ({attrs})"


def entries(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            yield doc
