"""Health checks as Docker's, run by a transient systemd timer per container (sdctr.runtime.health),
under a real systemd: what `ps`, `inspect`, `sdctr healthcheck run` and systemctl show."""

# ruff: noqa: F811  (every test takes test_runtime's `host` fixture, imported by its name)
from __future__ import annotations

import json

import pytest
from helpers.testhost import Machine, wait_for
from test_runtime import host, inspect, run_d, sdctr, unit_of  # noqa: F401

pytestmark = pytest.mark.testhost


def ps_status(host: Machine, cid: str) -> str:
    out = sdctr(host, "ps", "--format", "json").stdout
    rows = json.loads(out) if out.strip().startswith("[") else [json.loads(ln) for ln in out.splitlines()]
    return next(r["Status"] for r in rows if r["ID"] == cid[:12])


def timer_state(host: Machine, cid: str) -> str:
    timer = unit_of(cid).replace(".service", "-health.timer")
    return host.exec("systemctl", "show", "-P", "ActiveState", timer, check=False).stdout.strip()


def test_a_failing_check_turns_unhealthy_after_its_retries(host: Machine) -> None:
    cid = run_d(host, "--health-cmd", "echo checked; exit 1", "--health-interval", "1s",
                "--health-retries", "3", "busybox", "sleep", "1000")
    try:
        assert timer_state(host, cid) == "active"  # started by the unit's ExecStartPost
        wait_for(lambda: inspect(host, cid)["State"]["Health"]["FailingStreak"] >= 1, timeout=30,
                 what="a first failed check")
        health = inspect(host, cid)["State"]["Health"]
        if health["FailingStreak"] < 3:
            assert health["Status"] == "starting"  # not unhealthy before the third failure
            assert ps_status(host, cid).endswith("(health: starting)")
        wait_for(lambda: inspect(host, cid)["State"]["Health"]["Status"] == "unhealthy", timeout=30,
                 what="unhealthy")
        health = inspect(host, cid)["State"]["Health"]
        assert health["FailingStreak"] >= 3
        assert health["Log"][-1]["ExitCode"] == 1 and health["Log"][-1]["Output"] == "checked\n"
        assert ps_status(host, cid).startswith("Up ") and ps_status(host, cid).endswith("(unhealthy)")
        by_hand = sdctr(host, "healthcheck", "run", cid, check=False)
        assert (by_hand.returncode, by_hand.stdout.strip()) == (1, "unhealthy")
        # the container runs on (as Docker's: unhealthy is a status, not a stop)
        assert inspect(host, cid)["State"]["Running"]
        # and no failed unit of ours says so (seen before: ctr-<id>-health.service failed, the
        # test host degraded, and later tests that ask for no failed unit failed)
        check = unit_of(cid).replace(".service", "-health.service")
        assert host.exec("systemctl", "show", "-P", "Result", check).stdout.strip() == "success"
        assert check not in host.exec("systemctl", "list-units", "--failed", "--plain", "--no-legend").stdout
        sdctr(host, "stop", cid)
        assert timer_state(host, cid) in ("inactive", "")  # torn down with the container
    finally:
        sdctr(host, "rm", "-f", cid)


def test_a_passing_check_is_healthy(host: Machine) -> None:
    cid = run_d(host, "--health-cmd", "test -d /proc/1", "--health-interval", "1s",
                "busybox", "sleep", "1000")
    try:
        wait_for(lambda: ps_status(host, cid).endswith("(healthy)"), timeout=30, what="healthy")
        assert sdctr(host, "healthcheck", "run", cid).stdout.strip() == "healthy"
    finally:
        sdctr(host, "rm", "-f", cid)


def test_health_on_failure_restart_restarts_the_unit(host: Machine) -> None:
    """podman's --health-on-failure=restart: the check that finds the container unhealthy
    restarts its unit; the new start is checked again from `starting`."""
    cid = run_d(host, "--health-cmd", "exit 1", "--health-interval", "1s", "--health-retries", "2",
                "--health-on-failure", "restart", "busybox", "sleep", "1000")
    try:
        first = inspect(host, cid)["State"]["Pid"]
        wait_for(lambda: (d := inspect(host, cid)["State"])["Running"] and d["Pid"] not in (0, first),
                 timeout=60, what="a restart by the health check")
        journal = host.exec("journalctl", "--no-pager", "-u", unit_of(cid)).stdout
        assert journal.count("Started ") >= 2 or journal.count("Starting ") >= 2, journal
    finally:
        sdctr(host, "rm", "-f", cid)
