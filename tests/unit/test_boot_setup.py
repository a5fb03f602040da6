"""`sdctr system setup` (sdctr-setup.service): what it makes, and no failed unit at boot on a host
without the bridge network's tools (its containers use --network none or host)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdctr.cli.parser import build_parser
from sdctr.log import SdctrError

pytestmark = pytest.mark.unit


@pytest.fixture
def no_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    from sdctr.storage import overlay

    monkeypatch.setattr(overlay.OverlaySnapshotter, "setup", lambda self: ["storage directory /x"])


def setup(tmp_path: Path) -> int:
    args = build_parser().parse_args(["--root", str(tmp_path), "system", "setup"])
    return args.handler(args)  # type: ignore[no-any-return]


def test_setup_prints_what_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_storage: None,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from sdctr.net import setup as net

    monkeypatch.setattr(net, "require_tools", lambda: None)
    monkeypatch.setattr(net, "bring_up", lambda paths: ["bridge sdctr0 (10.89.0.1/16)"])
    assert setup(tmp_path) == 0
    assert capsys.readouterr().out == "made storage directory /x\nmade bridge sdctr0 (10.89.0.1/16)\n"


def test_a_host_without_nft_or_ip_gets_storage_and_no_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              no_storage: None,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from sdctr.net import setup as net

    def missing() -> None:
        raise SdctrError("the bridge network needs ip, which this host lacks (package iproute2)")

    def never(paths: object) -> list[str]:
        raise AssertionError("bring_up without its tools")

    monkeypatch.setattr(net, "require_tools", missing)
    monkeypatch.setattr(net, "bring_up", never)
    assert setup(tmp_path) == 0
    out, err = capsys.readouterr()
    assert out == "made storage directory /x\n"
    assert "no bridge network made: the bridge network needs ip" in err
