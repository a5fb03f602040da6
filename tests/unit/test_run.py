"""The one door to external commands: minimal environment, no stdin, failures as one error."""

from __future__ import annotations

import pytest

from sdctr.external import run
from sdctr.log import SdctrError, set_debug


def test_child_gets_a_minimal_environment_and_no_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "leak")
    out = run(["sh", "-c", "env; cat"]).stdout
    assert "SECRET_TOKEN" not in out
    assert "PATH=" in out


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
