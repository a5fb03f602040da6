"""Docker's --format templates: the one engine behind ps, images, inspect and volume ls."""

from __future__ import annotations

import pytest

from sdctr.cli.template import IMAGE_HEADERS, Template, render_all
from sdctr.log import SdctrError

pytestmark = pytest.mark.unit

DOC = {"ID": "0123456789ab", "Names": "web", "State": {"Status": "running", "Pid": 42},
       "Labels": {"tier": "web"}, "Args": ["-c", "echo hi"], "Ok": True, "Nothing": None, "Size": 1.0}


@pytest.mark.parametrize(("text", "expected"), [
    ("{{.Names}}", "web"),
    ("{{.State.Status}} {{.State.Pid}}", "running 42"),
    ("{{json .State}}", '{"Status":"running","Pid":42}'),
    ("{{json .Args}}", '["-c","echo hi"]'),
    ("{{.Args}} {{.Labels}} {{.Ok}} {{.Nothing}} {{.Size}}", "[-c echo hi] map[tier:web] true <nil> 1"),
    ("{{.Names | upper}}", "WEB"), ("{{upper .Names}}", "WEB"), ("{{lower \"AB\"}}", "ab"),
    ("{{index .Labels \"tier\"}}", "web"), ("{{index .Args 1}}", "echo hi"),
    ('{{printf "%s=%d" .Names .State.Pid}}', "web=42"), ('{{join .Args ","}}', "-c,echo hi"),
    ("a\\tb{{- \"  c\" -}}  d", "a\tb  cd"),
])
def test_fields_and_functions(text: str, expected: str) -> None:
    assert Template(text).render(DOC) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("{{range .Args}}[{{.}}]{{end}}", "[-c][echo hi]"),
    ("{{range $.Nothing}}x{{else}}none{{end}}", "none"),
    ("{{range .Labels}}{{.}} {{$.Names}}{{end}}", "web web"),
    ("{{if .Ok}}yes{{else}}no{{end}} {{if .Nothing}}yes{{else}}no{{end}}", "yes no"),
    ("{{with .State}}{{.Pid}}{{end}}{{with .Nothing}}x{{else}}-{{end}}", "42-"),
    ("{{range .Args -}} {{.}} {{- end}}", "-cecho hi"),
])
def test_control(text: str, expected: str) -> None:
    assert Template(text).render(DOC) == expected


def test_json_of_the_whole_document() -> None:
    assert Template("{{json .}}").render({"A": 1}) == '{"A":1}'


def test_table_has_dockers_headers_and_aligned_columns() -> None:
    docs = [{"ID": "aaa", "Repository": "busybox", "Tag": "latest"},
            {"ID": "bbbbbbbbbbbbbbb", "Repository": "x", "Tag": "1"}]
    lines = render_all("table {{.ID}}\\t{{.Repository}}:{{.Tag}}", docs, IMAGE_HEADERS)
    assert lines == ["IMAGE ID          REPOSITORY:TAG", "aaa               busybox:latest",
                     "bbbbbbbbbbbbbbb   x:1"]
    assert render_all("table {{.ID}}\\t{{.Names}}", [{"ID": "1", "Names": "n"}])[0] == "CONTAINER ID   NAMES"


@pytest.mark.parametrize(("text", "message"), [
    ("{{.Nope}}", "no field 'Nope'"), ("{{define \"x\"}}x{{end}}", "'define' is not supported"),
    ("{{range .Args}}x", "{{end}} is missing"), ("x{{end}}", "without"), ("{{if}}x{{end}}", "needs a value"),
    ("{{Names}}", "is not a field"), ("{{}}", "empty action"),
    ("{{nosuch .Names}}", "'nosuch' is not a function"),
])
def test_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(SdctrError, match=message):
        Template(text).render(DOC)
