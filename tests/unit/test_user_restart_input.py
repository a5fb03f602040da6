"""-u and --restart take exactly Docker's forms: a third part is an error, not ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdctr import options as opts
from sdctr.log import SdctrError
from sdctr.main import main

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("value", ["a:b:c", "1000:1000:1000", ":1000", "1000:"])
def test_user_has_at_most_two_parts(value: str) -> None:
    with pytest.raises(SdctrError, match="is not USER\\[:GROUP\\]"):
        opts.parse_user("--user", value)


def test_restart_count_is_one_number() -> None:
    with pytest.raises(SdctrError, match="'1:2' is not a whole number"):
        opts.parse_restart("--restart", "on-failure:1:2")


@pytest.mark.parametrize("args", [["--user", "a:b:c"], ["--restart", "on-failure:1:2"]])
def test_run_exits_125_with_one_line(args: list[str], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(tmp_path), "run", *args, "busybox"]) == 125
    err = capsys.readouterr().err
    assert err.startswith("sdctr: error: ") and args[0] in err.splitlines()[0]
