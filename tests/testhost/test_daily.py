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


# --- inside the container ---------------------------------------------------------------------------

def test_sys_fs_cgroup_is_the_containers_own_cgroup_read_only(host: Machine) -> None:
    """Programs read their limits where the kernel puts them; they see no other cgroup, and
    change nothing."""
    v2 = host.state()["cgroup_layout"] == "v2"
    memory = "/sys/fs/cgroup/memory.max" if v2 else "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    pids = "/sys/fs/cgroup/pids.max" if v2 else "/sys/fs/cgroup/pids/pids.max"
    script = (f"cat {memory} {pids}; ls -R /sys/fs/cgroup | grep -c -e sdctr.slice -e '[.]service' ; "
              f"echo 1 > {memory} || echo refused")
    r = sdctr(host, "run", "--rm", "-m", "64m", "--pids-limit", "77", "busybox", "sh", "-c", script)
    lines = r.stdout.split()
    assert lines[:3] == ["67108864", "77", "0"], r.stdout  # the -m value; no slice, no other unit
    assert lines[3] == "refused" and "Read-only file system" in r.stderr, r.stdout + r.stderr
    # --privileged, as Docker's: writable. On v2 the kernel itself (cgroup2's nsdelegate, which
    # systemd mounts it with) refuses a write to the limits of a cgroup namespace's own root, as
    # under Docker: there the sign is a child cgroup made and removed
    change = ("mkdir /sys/fs/cgroup/probe && rmdir /sys/fs/cgroup/probe && echo made" if v2 else
              f"echo 134217728 > {memory} && cat {memory}")
    r = sdctr(host, "run", "--rm", "--privileged", "-m", "64m", "busybox", "sh", "-c", change)
    assert r.stdout.split() == ["made" if v2 else "134217728"], r.stdout + r.stderr


def test_stats_shows_cpu_network_and_block_io(host: Machine) -> None:
    """`docker stats`' columns: a busy loop's CPU, the bytes a ping moved (as the container sees
    them: 10 pings of 2000 bytes out, as many back in), block I/O where the kernel counts it;
    --no-stream, and --format's fields, json and table."""
    hog = run_d(host, "--name", "hog", "busybox", "sh", "-c", "while :; do :; done")
    pinger = run_d(host, "--name", "pinger", "busybox", "sh", "-c",
                   "ping -c 10 -i 0.2 -s 2000 $(ip route | awk '/default/ {print $3}'); sleep 1000")
    try:
        import json
        import re

        r = sdctr(host, "stats", "--no-stream")
        header, *rows = r.stdout.splitlines()
        assert header.split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM",
                                  "%", "NET", "I/O", "BLOCK", "I/O", "PIDS"], header
        assert sorted(row.split()[1] for row in rows) == ["hog", "pinger"], r.stdout
        cpu = sdctr(host, "stats", "--no-stream", "--format", "{{.CPUPerc}}", "hog").stdout.strip()
        assert cpu.endswith("%") and float(cpu[:-1]) > 5, cpu  # CPUAccounting: it was 0.00% always
        wait_for(lambda: "10 packets" in sdctr(host, "logs", pinger).stdout, what="the pings")
        doc = json.loads(sdctr(host, "stats", "--no-stream", "--format", "json", "pinger").stdout)
        received, sent = (float(re.match(r"([\d.]+)kB$", part).group(1))  # type: ignore[union-attr]
                          for part in doc["NetIO"].split(" / "))
        assert received >= 20 and sent >= 20, doc  # 10 x 2028 bytes each way, and a little more
        assert re.fullmatch(r"[\d.]+[kMG]?B / [\d.]+[kMG]?B", doc["BlockIO"]), doc
        assert doc["Name"] == "pinger" and doc["PIDs"] == "2", doc
        lines = sdctr(host, "stats", "--no-stream", "--format", "table {{.Name}}\t{{.PIDs}}", "hog").stdout
        assert [line.split() for line in lines.splitlines()] == [["NAME", "PIDS"], ["hog", "2"]], lines
    finally:
        sdctr(host, "rm", "-f", hog, pinger, check=False)


def test_a_container_that_cannot_start_says_why_in_one_line(host: Machine) -> None:
    """As Docker: the init's reason alone (not systemd's failure and a journal dump after it),
    whether the init wrote it on our terminal (a foreground run) or in the journal (-d); a hint
    may say where the rest is."""
    cases = ((["-u", "no-such-user", "busybox", "id"], 125, "unable to find user no-such-user"),
             (["busybox", "no-such-command"], 127, '"no-such-command": executable file not found'))
    for args, status, why in cases:
        for detach in ([], ["-d"]):
            r = sdctr(host, "run", "--rm", *detach, *args, check=False)
            assert (r.returncode, r.stdout) == (status, ""), (args, r.returncode, r.stdout)
            first, *rest = r.stderr.splitlines()
            assert first.startswith("sdctr: error: ") and why in first, r.stderr
            assert len(rest) <= 1 and all(x.startswith("sdctr: hint: ctr-") and "journalctl -u ctr-" in x
                                          for x in rest), r.stderr
