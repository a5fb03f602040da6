"""`sdctr events` from journal entries (sdctr.runtime.events): systemd's catalogued messages and
sdctr's own, as Docker's event documents and lines; and the CLI's parsing of the new verbs."""

from __future__ import annotations

import pytest

from sdctr.cli import manage
from sdctr.cli.parser import build_parser
from sdctr.log import SdctrError
from sdctr.runtime import events

CID = "ab" * 32
UNIT = f"ctr-{CID[:12]}.service"


def journal(*entries: dict[str, str]) -> list[dict[str, str]]:
    return [{"UNIT": UNIT, "__REALTIME_TIMESTAMP": str(1_800_000_000_000_000 + i), **e}
            for i, e in enumerate(entries)]


def test_a_containers_life_as_dockers_events() -> None:
    entries = journal(
        {"SDCTR_EVENT": "create", "SDCTR_CONTAINER_ID": CID, "SDCTR_CONTAINER_NAME": "web",
         "SDCTR_CONTAINER_IMAGE": "busybox:latest"},
        {"MESSAGE_ID": "39f53479d3a045ac8e11786248231fbf", "JOB_TYPE": "start", "JOB_RESULT": "done",
         "MESSAGE": f"Started {UNIT} - sdctr container web (busybox:latest)."},
        {"MESSAGE_ID": "98e322203f7a4ed290d09fe03c09fe15", "EXIT_CODE": "exited", "EXIT_STATUS": "3"},
        {"MESSAGE_ID": "d9b373ed55a64feb8242e02dbe79a49c"},  # "Failed with result": the same exit
        {"MESSAGE_ID": "39f53479d3a045ac8e11786248231fbf", "JOB_TYPE": "start", "JOB_RESULT": "done"},
        {"MESSAGE_ID": "de5b426a63be47a7b6ac3eaac82e2f6f", "JOB_TYPE": "stop"},  # Stopping
        {"MESSAGE_ID": "7ad2d189f7e94e70a38c781354912448"},  # deactivated: the stop's
        {"MESSAGE_ID": "9d1aaa27d60140bd96365438aad20286", "JOB_TYPE": "stop", "JOB_RESULT": "done"},
        {"MESSAGE_ID": "39f53479d3a045ac8e11786248231fbf", "JOB_TYPE": "start", "JOB_RESULT": "done"},
        {"MESSAGE_ID": "98e322203f7a4ed290d09fe03c09fe15", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL"},
        {"MESSAGE_ID": "39f53479d3a045ac8e11786248231fbf", "JOB_TYPE": "start", "JOB_RESULT": "done"},
        {"MESSAGE_ID": "7ad2d189f7e94e70a38c781354912448"},  # on its own: it exited 0
        {"SDCTR_EVENT": "rename", "SDCTR_CONTAINER_ID": CID, "SDCTR_CONTAINER_NAME": "api",
         "SDCTR_CONTAINER_IMAGE": "busybox:latest", "SDCTR_ATTR_OLDNAME": "web"},
        {"UNIT": "sshd.service", "MESSAGE_ID": "39f53479d3a045ac8e11786248231fbf", "JOB_RESULT": "done"},
    )
    got = list(events.parse(iter(entries), {}))
    assert [(e["Action"], e["Actor"]["Attributes"].get("exitCode")) for e in got] == [
        ("create", None), ("start", None), ("die", "3"), ("start", None), ("die", None), ("stop", None),
        ("start", None), ("die", "137"), ("start", None), ("die", "0"), ("rename", None)]
    assert {e["id"] for e in got} == {CID}
    assert got[-1]["Actor"]["Attributes"] == {"image": "busybox:latest", "name": "api", "oldName": "web"}
    assert events.text(got[2]) == (f"2027-01-15T08:00:00.000002000Z container die {CID} "
                                   "(exitCode=3, image=busybox:latest, name=web)")


def test_a_container_sdctr_has_no_record_of_is_named_by_its_units_description() -> None:
    entries = journal({"MESSAGE_ID": "39f53479d3a045ac8e11786248231fbf", "JOB_RESULT": "done",
                       "MESSAGE": f"Started {UNIT} - sdctr container gone (alpine:3)."})
    (event,) = events.parse(iter(entries), {})
    assert event["Actor"]["Attributes"] == {"image": "alpine:3", "name": "gone"}
    assert events.matches(event, {"container": ["gone"]}) and events.matches(event, {"image": ["alpine:3"]})
    assert not events.matches(event, {"event": ["die"]})


@pytest.mark.parametrize(("arg", "parsed"), [("web:/etc", ("web", "/etc")), ("web:", ("web", "/")),
                                             ("/tmp/a:b", (None, "/tmp/a:b")), ("./a:b", (None, "./a:b")),
                                             ("-", (None, "-")), ("file", (None, "file"))])
def test_cp_arguments_as_docker_tells_them_apart(arg: str, parsed: tuple[str | None, str]) -> None:
    assert manage._cp_arg(arg) == parsed


@pytest.mark.parametrize("argv", [["pause", "a", "b"], ["unpause", "a"], ["rename", "a", "b"],
                                  ["top", "a", "-o", "pid,comm"], ["diff", "a"], ["cp", "-a", "a:/x", "-"],
                                  ["commit", "--no-pause", "-c", "ENV A=1", "a", "img:1"],
                                  ["container", "prune", "-f", "--filter", "label=x"],
                                  ["system", "prune", "-a", "-f"], ["system", "df", "--format", "json"],
                                  ["info", "-f", "json"], ["system", "info"], ["version"],
                                  ["events", "--since", "10m", "--filter", "event=die"]])
def test_the_new_verbs_parse(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.handler is not None


def test_a_bad_flag_is_sdctrs_error() -> None:
    with pytest.raises(SdctrError):
        build_parser().parse_args(["pause"])
