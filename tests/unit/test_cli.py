"""The command line's contract: --version, --help, and Docker's exit status 125 for our errors."""

from __future__ import annotations

import pytest
from helpers.cli import run_sdctr

import sdctr
from sdctr.main import main


def test_version_names_the_package_version() -> None:
    r = run_sdctr("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"sdctr version {sdctr.__version__}"


def test_help_lists_the_global_flags() -> None:
    r = run_sdctr("--help")
    assert r.returncode == 0
    for flag in ("--version", "--debug", "--root"):
        assert flag in r.stdout


@pytest.mark.parametrize("argv", [["--bogus"], ["no-such-verb"]])
def test_bad_usage_is_one_line_and_status_125(argv: list[str]) -> None:
    r = run_sdctr(*argv)
    assert r.returncode == 125
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("sdctr: error: ")
    assert "Traceback" not in r.stderr


def test_internal_errors_are_one_line_without_debug(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    def explode(_: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr("sdctr.cli.parser.build_parser", _parser_with_verb(explode))
    assert main(["explode"]) == 125
    err = capsys.readouterr().err
    assert "sdctr: error: internal error: RuntimeError: boom" in err
    assert "Traceback" not in err
    with pytest.raises(RuntimeError):
        main(["--debug", "explode"])


def _parser_with_verb(handler):  # type: ignore[no-untyped-def]
    from sdctr.cli import parser as cli

    original = cli.build_parser

    def build(only=None):  # type: ignore[no-untyped-def]
        parser = original(only)
        sub = next(a for a in parser._actions if a.dest == "verb")
        sub.add_parser("explode").set_defaults(handler=handler)  # type: ignore[attr-defined]
        return parser

    return build


@pytest.mark.parametrize(("argv", "verb"), [
    (["run", "--rm", "img"], "run"), (["--debug", "--root", "/r", "create", "x"], "create"),
    (["--root", "run", "ps"], "ps"), (["--version"], None),
])
def test_the_verb_is_found_past_the_global_flags(argv: list[str], verb: str | None) -> None:
    from sdctr.cli.parser import verb_of

    assert verb_of(argv) == verb


def test_run_parses_the_same_with_its_parser_alone() -> None:
    from sdctr.cli.parser import build_parser

    argv = ["--debug", "run", "--rm", "-m", "64m", "--name", "x", "busybox", "sh", "-c", "true"]
    alone, whole = build_parser(only="run").parse_args(argv), build_parser().parse_args(argv)
    assert {k: v for k, v in vars(alone).items() if k != "handler"} == \
        {k: v for k, v in vars(whole).items() if k != "handler"}


@pytest.mark.parametrize(("argv", "unit_command"), [
    (["init", "ID"], True), (["--root", "/r", "hook", "poststop", "ID"], True),
    (["--debug", "--root", "/r", "init", "ID"], True), (["hook", "restart", "ID"], False),
    (["init"], False), (["run", "init", "ID"], False), (["--root"], False),
])
def test_the_units_commands_bypass_the_parser(argv: list[str], unit_command: bool) -> None:
    from sdctr import main as entry

    assert (entry.unit_command(argv) is not None) is unit_command


def test_a_unit_command_runs_with_its_root_and_debug(tmp_path: object) -> None:
    r = run_sdctr("--debug", "--root", str(tmp_path), "hook", "poststop", "0" * 64)
    assert r.returncode == 125
    assert "no such container" in r.stderr and "Traceback" in r.stderr  # --debug: the traceback


def test_a_verb_on_many_containers_reports_each_failure_with_its_hint(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    import argparse

    from sdctr.cli import containers
    from sdctr.log import SdctrError

    def act(paths: object, sd: object, host: object, spec: str) -> None:
        if spec == "stuck":
            raise SdctrError("stuck did not stop", hint="try 'sdctr rm -f stuck'")

    monkeypatch.setattr(containers, "systemd_of", lambda args: (None, None))
    monkeypatch.setattr(containers, "find", lambda paths, ref: ref)
    monkeypatch.setattr(containers.containers, "finish_stop_of", lambda paths, sd, spec: False)
    args = argparse.Namespace(root=str(tmp_path), containers=["stuck", "web"])
    assert containers.for_each(args, act) == 1  # type: ignore[arg-type]
    out, err = capsys.readouterr()
    assert out == "web\n"  # the others still go
    assert err == "sdctr: error: stuck did not stop\nsdctr: hint: try 'sdctr rm -f stuck'\n"
