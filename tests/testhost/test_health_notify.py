"""Health checks as Docker's, run by one helper in the container's unit and told to systemd
(sdctr.init.health): READY=1 after the first pass, STATUS= in `systemctl status`, WATCHDOG=1 so
that systemd acts on an unhealthy container; and what `ps`, `inspect` and `healthcheck run` show."""

# ruff: noqa: F811  (every test takes test_runtime's `host` fixture, imported by its name)
from __future__ import annotations

import json
import time

import pytest
from helpers.testhost import Machine, wait_for
from test_runtime import host, inspect, run_d, sdctr, unit_of  # noqa: F401

pytestmark = pytest.mark.testhost


def ps_status(host: Machine, cid: str) -> str:
    out = sdctr(host, "ps", "--format", "json").stdout
    rows = json.loads(out) if out.strip().startswith("[") else [json.loads(ln) for ln in out.splitlines()]
    return next(r["Status"] for r in rows if r["ID"] == cid[:12])


def show(host: Machine, cid: str, prop: str) -> str:
    return host.exec("systemctl", "show", "-P", prop, unit_of(cid)).stdout.strip()


def no_failed_units(host: Machine) -> None:
    failed = host.exec("systemctl", "list-units", "--failed", "--plain", "--no-legend").stdout
    assert "ctr-" not in failed, failed


def test_a_passing_check_makes_the_unit_active_and_says_healthy(host: Machine) -> None:
    cid = run_d(host, "--health-cmd", "test -d /proc/1", "--health-interval", "1s",
                "busybox", "sleep", "1000")
    try:
        # `run -d` waited for the start job, which READY=1 after the first pass ended
        assert show(host, cid, "ActiveState") == "active"
        assert show(host, cid, "StatusText") == "healthy 3/3"
        assert 'Status: "healthy 3/3"' in host.exec("systemctl", "status", "--no-pager", unit_of(cid),
                                                    check=False).stdout
        assert ps_status(host, cid).endswith("(healthy)")
        assert inspect(host, cid)["State"]["Health"]["Status"] == "healthy"
        assert sdctr(host, "healthcheck", "run", cid).stdout.strip() == "healthy"
        # no timer unit per container: the check runs in the container's own unit
        units = host.exec("systemctl", "list-units", "--all", "--plain", "--no-legend").stdout
        assert f"ctr-{cid[:12]}-health" not in units
        # and its helper is no process the container sees
        seen = sdctr(host, "exec", cid, "ps").stdout
        assert "sdctr" not in seen and "python" not in seen, seen
    finally:
        sdctr(host, "rm", "-f", cid)


def test_the_unit_is_active_only_once_a_check_passed(host: Machine) -> None:
    started = time.monotonic()
    cid = run_d(host, "--health-cmd", "test -e /tmp/up", "--health-interval", "1s",
                "--health-start-period", "60s",
                "busybox", "sh", "-c", "sleep 3; touch /tmp/up; exec sleep 1000")
    try:
        assert time.monotonic() - started >= 3  # the start job waited for the first pass
        assert show(host, cid, "ActiveState") == "active"
        assert show(host, cid, "StatusText") == "healthy 3/3"
        log = inspect(host, cid)["State"]["Health"]["Log"]
        assert log[-1]["ExitCode"] == 0 and any(r["ExitCode"] == 1 for r in log), log
    finally:
        sdctr(host, "rm", "-f", cid)


def test_a_failing_check_is_unhealthy_and_runs_on(host: Machine) -> None:
    """Docker's default (--health-on-failure none): unhealthy is a status, not a stop."""
    cid = run_d(host, "--health-cmd", "echo checked; exit 1", "--health-interval", "1s",
                "--health-retries", "2", "busybox", "sleep", "1000")
    try:
        # unhealthy before any pass: active all the same, and no watchdog to act
        assert show(host, cid, "ActiveState") == "active"
        assert show(host, cid, "StatusText") == "unhealthy: checked"
        assert show(host, cid, "WatchdogUSec") in ("0", "infinity")
        health = inspect(host, cid)["State"]["Health"]
        assert health["Status"] == "unhealthy" and health["FailingStreak"] >= 2
        assert health["Log"][-1]["ExitCode"] == 1 and health["Log"][-1]["Output"] == "checked\n"
        assert ps_status(host, cid).startswith("Up ") and ps_status(host, cid).endswith("(unhealthy)")
        by_hand = sdctr(host, "healthcheck", "run", cid, check=False)
        assert (by_hand.returncode, by_hand.stdout.strip()) == (1, "unhealthy")
        time.sleep(3)
        assert inspect(host, cid)["State"]["Running"] and show(host, cid, "NRestarts") == "0"
        no_failed_units(host)
    finally:
        sdctr(host, "rm", "-f", cid)


def test_health_on_failure_restart_is_systemds_watchdog(host: Machine) -> None:
    """The check passes once a start (it removes what the command made), then fails: the helper
    stops WATCHDOG=1, systemd's watchdog stops the unit and Restart=on-watchdog starts it again,
    healthy once more."""
    cid = run_d(host, "--health-cmd", "rm /tmp/ok", "--health-interval", "1s", "--health-retries", "2",
                "--health-start-period", "30s", "--health-on-failure", "restart",
                "busybox", "sh", "-c", "touch /tmp/ok; exec sleep 1000")
    try:
        assert show(host, cid, "Restart") == "on-watchdog"
        assert show(host, cid, "WatchdogUSec") == "41s"  # one interval, one timeout (30s), 10s of slack
        first = inspect(host, cid)["State"]["Pid"]
        try:
            wait_for(lambda: int(show(host, cid, "NRestarts")) >= 1, timeout=60, what="a restart")
        except AssertionError:
            print(host.exec("journalctl", "--no-pager", "-u", unit_of(cid)).stdout)
            raise
        journal = host.exec("journalctl", "--no-pager", "-u", unit_of(cid)).stdout
        assert "atchdog" in journal, journal  # "Watchdog timeout" / "killing" / "Result: watchdog"
        wait_for(lambda: show(host, cid, "ActiveState") == "active", timeout=30, what="active again")
        assert inspect(host, cid)["State"]["Pid"] not in (0, first)
    finally:
        sdctr(host, "rm", "-f", cid)


def test_health_on_failure_kill_fails_the_unit(host: Machine) -> None:
    """kill, with no --restart: systemd kills the container (SIGKILL) and the unit fails with
    Result=watchdog, for `systemctl --failed` to show."""
    cid = run_d(host, "--health-cmd", "rm /tmp/ok", "--health-interval", "1s", "--health-retries", "1",
                "--health-start-period", "30s", "--health-on-failure", "kill",
                "busybox", "sh", "-c", "touch /tmp/ok; exec sleep 1000")
    try:
        wait_for(lambda: show(host, cid, "ActiveState") == "failed", timeout=60, what="failed")
        assert show(host, cid, "Result") == "watchdog"
    finally:
        sdctr(host, "rm", "-f", cid)
        host.exec("systemctl", "reset-failed", unit_of(cid), check=False)


# the container's own READY=1 (and a STATUS=), sent by the host's python3 bound in read-only
SAYS_READY = """import os, socket, time
time.sleep(3)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(os.environ["NOTIFY_SOCKET"])
s.send(b"READY=1\\nSTATUS=serving from the container")
time.sleep(1000)
"""


def test_sdnotify_container_the_unit_waits_for_the_containers_ready(host: Machine) -> None:
    started = time.monotonic()
    cid = run_d(host, "--sdnotify", "container",
                "-v", "/usr:/usr:ro", "-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro",
                "busybox", "/usr/bin/python3", "-c", SAYS_READY)
    try:
        assert time.monotonic() - started >= 3  # the start job waited for the container's READY=1
        assert show(host, cid, "ActiveState") == "active"
        assert show(host, cid, "StatusText") == "serving from the container"
        env = sdctr(host, "exec", cid, "env").stdout
        assert "NOTIFY_SOCKET=/run/notify/notify.sock" in env
    finally:
        sdctr(host, "rm", "-f", cid)


def test_sdnotify_ignore_is_ready_before_the_check_passes(host: Machine) -> None:
    started = time.monotonic()
    cid = run_d(host, "--sdnotify", "ignore", "--health-cmd", "test -e /tmp/up", "--health-interval", "1s",
                "--health-start-period", "60s",
                "busybox", "sh", "-c", "sleep 3; touch /tmp/up; exec sleep 1000")
    try:
        assert time.monotonic() - started < 3
        assert show(host, cid, "ActiveState") == "active"
        wait_for(lambda: show(host, cid, "StatusText") == "healthy 3/3", timeout=30, what="healthy")
        assert "NOTIFY_SOCKET" not in sdctr(host, "exec", cid, "env").stdout
    finally:
        sdctr(host, "rm", "-f", cid)


def test_a_paused_container_is_not_restarted_by_its_watchdog(host: Machine) -> None:
    """Docker pauses the checks of a paused container; here the helper is frozen with it, and
    the watchdog (12 s: 1 s interval, 1 s timeout, 10 s slack) must not take that for a hang."""
    cid = run_d(host, "--health-cmd", "true", "--health-interval", "1s", "--health-timeout", "1s",
                "--health-on-failure", "restart", "busybox", "sleep", "1000")
    try:
        assert show(host, cid, "WatchdogUSec") == "12s"
        pid = inspect(host, cid)["State"]["Pid"]
        sdctr(host, "pause", cid)
        time.sleep(16)
        sdctr(host, "unpause", cid)
        time.sleep(2)
        assert show(host, cid, "NRestarts") == "0"
        assert inspect(host, cid)["State"]["Pid"] == pid
    finally:
        sdctr(host, "rm", "-f", cid)
