"""The init's own error line, read from the unit's journal after a failed start: journald reads
the unit's stream on its own time, so the line may come after the job's end (seen once in CI:
the generic 'failed to start' instead of Docker's one line)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from sdctr import external
from sdctr.systemd import manager

pytestmark = pytest.mark.unit

JOURNAL = "Starting ctr-x.service - sdctr container...\nsdctr: error: unable to find user nosuchuser\n"


def journal_after(monkeypatch: pytest.MonkeyPatch, calls: int) -> list[int]:
    """journalctl has the line from its `calls`-th call on; returns the count of calls made."""
    made = [0]

    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        made[0] += 1
        out = JOURNAL if made[0] >= calls else JOURNAL.splitlines()[0] + "\n"
        return subprocess.CompletedProcess(argv, 0, out, "")

    monkeypatch.setattr(external, "run", run)
    monkeypatch.setattr(manager.time, "sleep", lambda _: None)
    return made


def test_an_init_that_exited_125_is_waited_for_until_journald_has_its_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    made = journal_after(monkeypatch, 3)
    assert manager.init_said("ctr-x.service", wait=True) == "unable to find user nosuchuser"
    assert made[0] == 3


def test_without_wait_one_look_and_a_bounded_wait_gives_up() -> None:
    with pytest.MonkeyPatch.context() as m:
        made = journal_after(m, 3)
        assert manager.init_said("ctr-x.service") is None and made[0] == 1
    with pytest.MonkeyPatch.context() as m:
        made = journal_after(m, 99)
        assert manager.init_said("ctr-x.service", wait=True) is None and made[0] == 10
