"""Restart policies as Docker's and `ps` as a Docker user lists (issue 14), under a real systemd,
checked as that user would: systemctl's NRestarts and failed state, inspect, ps."""

# ruff: noqa: F811  (every test takes test_runtime's `host` fixture, imported by its name)
from __future__ import annotations

import time

import pytest
from helpers.testhost import Machine, wait_for
from test_runtime import host, inspect, run_d, sdctr, unit_of  # noqa: F401

pytestmark = pytest.mark.testhost


def show(host: Machine, cid: str, prop: str) -> str:
    return host.exec("systemctl", "show", "-p", prop, "--value", unit_of(cid)).stdout.strip()


def restarts(host: Machine, cid: str) -> int:
    return int(show(host, cid, "NRestarts") or 0)


# --- restart policies -----------------------------------------------------------------------------

def test_restart_always_does_not_give_up(host: Machine) -> None:
    """systemd's start limit (5 starts in 10 s) made `always` give up after 5 quick exits."""
    cid = run_d(host, "--restart", "always", "busybox", "sh", "-c", "exit 1")
    try:
        wait_for(lambda: restarts(host, cid) >= 8, timeout=120, what="8 restarts")
        assert show(host, cid, "ActiveState") != "failed", show(host, cid, "Result")
        doc = inspect(host, cid)
        assert doc["RestartCount"] >= 8
        assert doc["HostConfig"]["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
    finally:
        sdctr(host, "rm", "-f", cid)


def test_on_failure_keeps_its_count(host: Machine) -> None:
    cid = run_d(host, "--restart", "on-failure:2", "busybox", "sh", "-c", "echo ran; exit 1")
    try:
        wait_for(lambda: show(host, cid, "ActiveState") == "failed", timeout=60, what="the unit to give up")
        time.sleep(1)  # no restart comes after
        assert sdctr(host, "logs", cid).stdout.split() == ["ran"] * 3  # the first run and 2 restarts
        assert restarts(host, cid) == 3  # systemd counts the restart its start limit refused
        doc = inspect(host, cid)
        assert doc["RestartCount"] == 2
        assert doc["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
        assert doc["State"]["Status"] == "exited" and doc["State"]["ExitCode"] == 1
    finally:
        sdctr(host, "rm", "-f", cid)


# --- lists ----------------------------------------------------------------------------------------

def test_ps_filters_newest_first_and_labels_in_inspect(host: Machine) -> None:
    a = run_d(host, "--name", "pa", "-l", "tier=web", "--label", "team", "busybox", "sleep", "1000")
    b = run_d(host, "--name", "pb", "-l", "tier=db", "busybox", "sleep", "1000")
    c = run_d(host, "--name", "pc", "busybox", "sh", "-c", "exit 3")
    try:
        assert sdctr(host, "wait", c).stdout.strip() == "3"

        def ids(*args: str) -> list[str]:
            return sdctr(host, "ps", "-q", "--no-trunc", *args).stdout.split()

        assert ids("--filter", "label=tier=web") == [a]
        assert ids("--filter", "label=tier") == [b, a]  # newest first
        assert ids("--filter", "label=tier", "--filter", "label=team") == [a]
        assert ids("-a", "--filter", "exited=3") == [c]
        assert ids("--filter", "status=exited") == [c]
        assert ids("--filter", "name=^p[ab]$", "--filter", "ancestor=busybox") == [b, a]
        assert ids("-l") == [c] and ids("-n", "2") == [c, b]
        assert a in sdctr(host, "ps", "--no-trunc").stdout
        assert sdctr(host, "ps", "--format", "{{.Names}} {{.Labels}}", "--filter", "name=pa").stdout == \
            "pa tier=web,team=\n"
        r = sdctr(host, "ps", "--filter", "color=red", check=False)
        assert r.returncode == 125
        assert r.stderr.startswith("sdctr: error: --filter 'color=red' is not a filter")
        doc = inspect(host, a)
        assert doc["Config"]["Labels"] == {"tier": "web", "team": ""}
        assert (doc["Path"], doc["Args"], doc["Mounts"], doc["RestartCount"]) == ("sleep", ["1000"], [], 0)
    finally:
        sdctr(host, "rm", "-f", a, b, c)
