"""The one door to external commands: minimal environment, no stdin, failures as one error."""

from __future__ import annotations

import os

import pytest

from sdctr.external import run
from sdctr.log import SdctrError, set_debug


def test_child_gets_a_minimal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "leak")
    out = run(["env"]).stdout
    assert "SECRET_TOKEN" not in out
    assert "PATH=" in out


def test_child_gets_no_stdin() -> None:
    """Our own standard input holds a line: a child that inherited it would read the line; run()
    gives it /dev/null."""
    read_end, write_end = os.pipe()
    os.write(write_end, b"meant for sdctr, not its children\n")
    os.close(write_end)
    saved = os.dup(0)
    try:
        os.dup2(read_end, 0)
        out = run(["sh", "-c", "readlink /proc/self/fd/0; cat"]).stdout
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(read_end)
    assert out == "/dev/null\n"


def test_failure_names_the_command_status_and_last_stderr_line() -> None:
    with pytest.raises(SdctrError) as e:
        run(["sh", "-c", "echo first >&2; echo 'the reason' >&2; exit 3"])
    assert "exit status 3" in str(e.value)
    assert str(e.value).endswith("the reason")


def test_missing_program_is_a_clear_error() -> None:
    with pytest.raises(SdctrError, match="no-such-program-xyz: command not found"):
        run(["no-such-program-xyz"])


def test_debug_echoes_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    set_debug(True)
    try:
        run(["true", "an arg"])
    finally:
        set_debug(False)
    assert "+ true 'an arg'" in capsys.readouterr().err
