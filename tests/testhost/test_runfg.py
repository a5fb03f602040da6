"""Issue 14, as a Docker user checks it: a foreground run's lines in the journal, stdout and
stderr apart in `logs`."""

# ruff: noqa: F811  (every test takes test_runtime's `host` fixture, imported by its name)
from __future__ import annotations

import pytest
from helpers.testhost import Machine, wait_for
from test_runtime import host, inspect, run_d, sdctr, unit_files  # noqa: F401

pytestmark = pytest.mark.testhost

SCRIPT = "echo out1; echo err1 >&2; echo out2"


def journal_of(host: Machine, unit: str) -> str:
    return host.exec("journalctl", "-u", unit, "-o", "cat", "--no-pager").stdout


def test_logs_keep_stderr_apart_and_a_foreground_run_is_in_the_journal(host: Machine) -> None:
    flags = "--unit-file-mode " if unit_files(host) else ""
    cid = run_d(host, "busybox", "sh", "-c", SCRIPT)
    try:
        wait_for(lambda: "out2" in sdctr(host, "logs", cid).stdout, what="the detached lines")
        # what a user types: stderr's line is not on stdout
        assert host.sh(f"sdctr {flags}logs {cid} 2>/dev/null").stdout == "out1\nout2\n"
        assert host.sh(f"sdctr {flags}logs {cid} >/dev/null").stderr == "err1\n"

        r = sdctr(host, "run", "--name", "fg", "busybox", "sh", "-c", SCRIPT + "; printf tail")
        assert r.stderr == "err1\n", r.stderr
        # an old systemd's foreground run follows the journal, which ends every line
        assert r.stdout in ("out1\nout2\ntail", "out1\nout2\ntail\n"), r.stdout
        unit = inspect(host, "fg")["Unit"]
        wait_for(lambda: "tail" in journal_of(host, unit), what="the foreground run in the journal")
        ours = ("out1", "err1", "out2", "tail")
        assert sorted(x for x in journal_of(host, unit).splitlines() if x in ours) == sorted(ours)
        assert host.sh(f"sdctr {flags}logs fg 2>/dev/null").stdout == "out1\nout2\ntail\n"
        assert host.sh(f"sdctr {flags}logs fg >/dev/null").stderr == "err1\n"
    finally:
        sdctr(host, "rm", "-f", cid, "fg", check=False)
