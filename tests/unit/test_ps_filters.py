"""`ps --filter` as Docker filters (issue 14): the pure parse and match, without any container."""

from __future__ import annotations

import pytest

from sdctr.cli.containers import PS_FILTERS, parse_filters, ps_matches
from sdctr.log import SdctrError

pytestmark = pytest.mark.unit


def row(**kw: object) -> dict[str, object]:
    base = {"Id": "0123456789ab" + "c" * 52, "Names": "web-1", "Image": "nginx:latest",
            "ImageID": "f00d" + "e" * 60, "State": "running", "ExitCode": None,
            "LabelMap": {"tier": "web", "team": ""}}
    base.update(kw)
    return base


def matches(*filters: str, **kw: object) -> bool:
    return ps_matches(row(**kw), parse_filters(list(filters), PS_FILTERS))


def test_no_filter_keeps_everything() -> None:
    assert matches()


@pytest.mark.parametrize(("filters", "kept"), [
    (("name=web",), True), (("name=^web-1$",), True), (("name=db",), False),
    (("name=db", "name=web"), True),  # one key's values are alternatives
    (("id=0123456789ab",), True), (("id=^cccc",), False),
    (("status=running",), True), (("status=exited",), False),
    (("label=tier",), True), (("label=tier=web",), True), (("label=tier=db",), False),
    (("label=team=",), True), (("label=nope",), False),
    (("label=tier=web", "label=nope"), False),  # every label must hold
    (("ancestor=nginx",), True), (("ancestor=nginx:latest",), True), (("ancestor=nginx:1.25",), False),
    (("ancestor=sha256:f00d",), True), (("ancestor=f00d",), True), (("ancestor=busybox",), False),
    (("name=web", "status=exited"), False),  # every key must hold
])
def test_docker_rules(filters: tuple[str, ...], kept: bool) -> None:
    assert matches(*filters) is kept


def test_exited_is_an_exit_code_of_a_stopped_container() -> None:
    assert matches("exited=0", State="exited", ExitCode=0)
    assert matches("exited=1", "exited=137", State="exited", ExitCode=137)
    assert not matches("exited=0", State="exited", ExitCode=1)
    assert not matches("exited=0", State="running", ExitCode=None)


@pytest.mark.parametrize(("text", "message"), [
    ("color=red", "is not a filter"), ("name", "is not a filter"), ("status=sleeping", "is not a status"),
    ("exited=x", "is not an exit code"), ("name=[", "not a regular expression"),
])
def test_bad_filters_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(SdctrError, match=message):
        parse_filters([text], PS_FILTERS)


def test_keys_are_grouped() -> None:
    assert parse_filters(["name=a", "Name=b", "label=x=y=z"], PS_FILTERS) == {
        "name": ["a", "b"], "label": ["x=y=z"]}
