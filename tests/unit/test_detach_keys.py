"""Docker's detach keys: their syntax and the scan of what the user types."""

from __future__ import annotations

import pytest

from sdctr.cli.terminal import DetachScanner, parse_detach_keys
from sdctr.log import SdctrError

pytestmark = pytest.mark.unit


def test_dockers_key_forms() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-x,y") == b"\x18y"
    assert parse_detach_keys("ctrl-@,ctrl-[,ctrl-_") == b"\x00\x1b\x1f"
    for bad in ("ctrl-", "ctrl-pq", "", "ab", "ctrl-1"):
        with pytest.raises(SdctrError):
            parse_detach_keys(bad)


def test_the_scan_passes_on_what_only_looked_like_the_sequence() -> None:
    s = DetachScanner(b"\x10\x11")
    assert s.feed(b"ab\x10") == (b"ab", False)  # held: it may be the start
    assert s.feed(b"c") == (b"\x10c", False)  # it was not
    assert s.feed(b"\x10\x10") == (b"\x10", False)
    assert s.feed(b"\x11rest") == (b"", True)
