"""sdctr.log.report: the one error line (and hint) the init and exec's helper end with, and the
exit status they return."""

from __future__ import annotations

import errno

import pytest

from sdctr.log import EXIT_NOT_FOUND, EXIT_SDCTR, SdctrError, report

pytestmark = pytest.mark.unit


def test_an_sdctr_error_is_its_line_its_hint_and_its_status(capsys: pytest.CaptureFixture[str]) -> None:
    status = report(SdctrError("exec: \"x\": not found", hint="check PATH", status=EXIT_NOT_FOUND))
    assert status == EXIT_NOT_FOUND
    assert capsys.readouterr().err == 'sdctr: error: exec: "x": not found\nsdctr: hint: check PATH\n'


def test_an_os_error_names_its_file_or_call_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert report(FileNotFoundError(errno.ENOENT, "No such file or directory", "/run/x")) == EXIT_SDCTR
    # sdctr.linux puts the call's name in strerror and gives no file name
    assert report(OSError(errno.EPERM, "setns: Operation not permitted")) == EXIT_SDCTR
    assert capsys.readouterr().err == ("sdctr: error: /run/x: No such file or directory\n"
                                       "sdctr: error: setns: Operation not permitted\n")
