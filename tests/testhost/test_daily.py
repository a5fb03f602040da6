"""A Docker user's daily commands (issue 14), under a real systemd, checked as that user would:
systemctl, journalctl, and the CLI's own exit codes and lines."""

# ruff: noqa: F811  (every test takes test_runtime's `host` fixture, imported by its name)
from __future__ import annotations

import pytest
from helpers.testhost import Machine, wait_for
from test_runtime import host, run_d, sdctr, unit_of  # noqa: F401

pytestmark = pytest.mark.testhost


def failed_units(host: Machine) -> str:
    return host.exec("systemctl", "--failed", "--no-legend", "--plain").stdout


# --- clean stops ----------------------------------------------------------------------------------

def test_a_stopped_container_is_not_a_failed_unit(host: Machine) -> None:
    cid = run_d(host, "busybox", "sleep", "1000")
    own = run_d(host, "busybox", "sh", "-c", "exit 3")
    tough = ""
    try:
        status = host.exec("systemctl", "status", "--no-pager", "-n", "20", unit_of(cid)).stdout
        assert "active (running)" in status
        assert "which is not our child" not in status, status
        sdctr(host, "stop", cid)
        # a command that fails on its own is a failed unit, as systemd says of any service
        wait_for(lambda: unit_of(own) in failed_units(host), what="the failing container's unit")
        assert unit_of(cid) not in failed_units(host)
        assert host.exec("systemctl", "is-active", unit_of(cid), check=False).stdout.strip() == "inactive"
        assert sdctr(host, "wait", cid).stdout.strip() == "143"  # Docker's status after a stop
        # stop's grace period ends in SIGKILL, also a clean stop
        tough = run_d(host, "busybox", "sh", "-c", "trap '' TERM; echo ready; sleep 1000")
        wait_for(lambda: "ready" in sdctr(host, "logs", tough).stdout, what="the trap")
        sdctr(host, "stop", "-t", "1", tough)
        assert sdctr(host, "wait", tough).stdout.strip() == "137"
        assert unit_of(tough) not in failed_units(host)
        sdctr(host, "rm", own)
        system = host.exec("systemctl", "is-system-running", check=False).stdout.strip()
        assert system == "running", failed_units(host)
    finally:
        sdctr(host, "rm", "-f", cid, own, *([tough] if tough else []), check=False)


# --- exact input handling -------------------------------------------------------------------------

def test_exact_input_handling(host: Machine) -> None:
    for args, message in ((["--pid", "host"], "unrecognized arguments: --pid"),
                          (["-u", "4294967295"], "4294967295 is not a user or group id"),
                          (["-u", "99999999999"], "99999999999 is not a user or group id")):
        r = sdctr(host, "run", "-d", *args, "busybox", "id", "-u", check=False)
        assert r.returncode == 125 and r.stdout == "", r.stdout
        assert r.stderr.startswith("sdctr: error: ") and message in r.stderr.splitlines()[0], r.stderr
        assert "internal error" not in r.stderr
    r = host.exec("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "sdctr", "ps",
                  check=False)
    assert r.returncode == 125 and r.stderr.startswith("sdctr: error: sdctr needs root"), r.stderr
    assert "Traceback" not in r.stderr and "PermissionError" not in r.stderr
    for verb in ("stop", "rm", "kill", "wait", "inspect", "logs", "top", "start", "export"):
        r = sdctr(host, verb, "nosuch", check=False)
        assert r.returncode == 1, (verb, r.returncode, r.stderr)
        assert r.stderr.startswith("sdctr: error: no such "), (verb, r.stderr)


def test_wait_on_an_auto_removed_container_and_kill_of_a_stopped_one(host: Machine) -> None:
    cid = run_d(host, "--rm", "busybox", "sh", "-c", "sleep 1; exit 3")
    assert sdctr(host, "wait", cid).stdout.strip() == "3"
    cid = run_d(host, "--rm", "busybox", "sh", "-c", "sleep 1; kill -9 $$")
    assert sdctr(host, "wait", cid).stdout.strip() == "137"
    # The race the tests once lost under load: a `wait` that starts after the container exited
    # and was removed gets its exit status all the same (by id or id prefix), whether the
    # poststop script (a plain exit) or the hook (a signal) removed it.
    for command, code in (("exit 3", "3"), ("kill -9 $$", "137")):
        cid = run_d(host, "--rm", "busybox", "sh", "-c", command)
        record = f"/var/lib/sdctr/containers/{cid}"
        wait_for(lambda record=record: host.exec("test", "-e", record, check=False).returncode == 1,
                 what="the container's removal")
        assert cid[:12] not in sdctr(host, "ps", "-aq").stdout.split()
        r = sdctr(host, "wait", cid, check=False)
        assert (r.returncode, r.stdout) == (0, f"{code}\n"), r
        assert sdctr(host, "wait", cid[:12]).stdout == f"{code}\n"
    cid = run_d(host, "--name", "done", "busybox", "true")
    try:
        assert sdctr(host, "wait", cid).stdout.strip() == "0"
        r = sdctr(host, "kill", "done", check=False)
        assert r.returncode == 1
        assert r.stderr.splitlines()[0] == "sdctr: error: cannot kill container done: it is not running"
    finally:
        sdctr(host, "rm", "-f", cid)


# --- logs -------------------------------------------------------------------------------------------

def test_logs_follow_ends_with_the_container_and_since_takes_dockers_forms(host: Machine) -> None:
    cid = run_d(host, "busybox", "sh", "-c", "echo first; sleep 2; echo last")
    try:
        r = host.exec("timeout", "20", "sdctr", "logs", "-f", cid, check=False)
        assert r.returncode == 0, (r.returncode, r.stderr)  # timeout's 124: -f never ended
        assert r.stdout == "first\nlast\n"
        assert sdctr(host, "logs", "--since", "10m", cid).stdout == "first\nlast\n"
        assert sdctr(host, "logs", "--since", "2030-01-01T00:00:00Z", cid).stdout == ""
        assert sdctr(host, "logs", "--until", "1000000000", cid).stdout == ""
        r = sdctr(host, "logs", "--since", "yesterday", cid, check=False)
        assert r.returncode == 125
        assert r.stderr.splitlines()[0] == "sdctr: error: --since 'yesterday' is not a time"
    finally:
        sdctr(host, "rm", "-f", cid)
