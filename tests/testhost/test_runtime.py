"""`sdctr run` and the container lifecycle, under a real systemd, checked the way a user would:
systemctl, journalctl, the kernel's cgroup files, and what the container itself sees."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import docker
from helpers.rootfs import BUSYBOX_ROOTFS_SH
from helpers.testhost import Machine, wait_for

pytestmark = pytest.mark.testhost

CGROUP_FS = Path("/sys/fs/cgroup")

# The busybox image, made inside the test host by its own tools: the tiers' root file system
# (helpers/busybox-rootfs.sh, on stdin) and a /bin/noexec that is not executable.
MAKE_IMAGE = r"""
set -e
printf '#!/bin/sh\necho not really\n' > /tmp/bb/bin/noexec && chmod 644 /tmp/bb/bin/noexec
tar -C /tmp/bb -cf /tmp/bb.tar .
sdctr import /tmp/bb.tar busybox
"""


@pytest.fixture(scope="module", params=["transient", "unit-file"])
def host(testhost: Machine, request: pytest.FixtureRequest) -> Iterator[Machine]:
    """Every test runs twice: with transient units over D-Bus (systemd >= 236), and with the
    unit files an older systemd (RHEL7's 219) needs, forced by the hidden --unit-file-mode."""
    testhost.exec("sh", "-c", "rm -rf /tmp/bb && sh -s /tmp/bb", input=BUSYBOX_ROOTFS_SH.read_text())
    testhost.sh(MAKE_IMAGE)
    testhost.mode = request.param  # type: ignore[attr-defined]
    yield testhost
    del testhost.mode  # type: ignore[attr-defined]  # the test host is the session's: others use it after us
    # every container a test left is a leak the test should have caught; remove them all the same
    testhost.sh("sdctr ps -aq | xargs -r sdctr rm -f", check=False)


def unit_files(host: Machine) -> bool:
    return getattr(host, "mode", "transient") == "unit-file"


def sdctr(host: Machine, *args: str, check: bool = True, input: str | None = None):  # type: ignore[no-untyped-def]
    flags = ["--unit-file-mode"] if unit_files(host) else []
    return host.exec("sdctr", *flags, *args, check=check, input=input)


def run_d(host: Machine, *args: str) -> str:
    cid = sdctr(host, "run", "-d", *args).stdout.strip()
    assert len(cid) == 64, cid
    return cid


def unit_of(cid: str) -> str:
    return f"ctr-{cid[:12]}.service"


def host_cgroup(host: Machine, cid: str, controller: str) -> Path:
    return CGROUP_FS / controller / f"sdctr-testhost-{host.name}/sdctr.slice/{unit_of(cid)}"


def inspect(host: Machine, cid: str) -> dict:  # type: ignore[type-arg]
    return json.loads(sdctr(host, "inspect", cid).stdout)[0]  # type: ignore[no-any-return]


LEFTOVER_DIRS = ("/var/lib/sdctr", "/run/sdctr", "/run/systemd/system")


def leftovers(host: Machine, cid: str) -> list[str]:
    """Everything a removed container could leave: unit, mount, record, snapshot, runtime dir, and
    its cgroup in any hierarchy (read from this machine's cgroup file system)."""
    found = []
    units = host.exec("systemctl", "list-units", "--all", "--no-legend", "--plain", unit_of(cid)).stdout
    if unit_of(cid) in units:
        found.append(f"unit: {units.strip()}")
    mounts = host.exec("cat", "/proc/self/mountinfo").stdout
    found += [f"mount: {line}" for line in mounts.splitlines() if cid[:12] in line]
    # find's own errors fail the probe (check=True): a directory it cannot read hides nothing
    paths = host.sh(f"for d in {' '.join(LEFTOVER_DIRS)}; do if [ -e $d ]; then "
                    f"find $d -name '*{cid[:12]}*'; fi; done").stdout.split()
    found += [f"path: {p}" for p in paths]
    found += [f"cgroup: {c}" for c in CGROUP_FS.glob(f"*/sdctr-testhost-{host.name}/**/*{cid[:12]}*")]
    return found


def test_the_leftovers_probe_finds_what_is_planted(host: Machine) -> None:
    """The positive control of every `leftovers(...) == []` below: each kind of trace is found."""
    fake = "feedfacecafe" + "0" * 52
    planted_cgroup = CGROUP_FS / "pids" / f"sdctr-testhost-{host.name}/sdctr.slice/ctr-{fake[:12]}.service"
    host.sh(f"mkdir -p /var/lib/sdctr/containers/{fake} /run/sdctr/{fake}/rootfs && "
            f"mount -t tmpfs probe /run/sdctr/{fake}/rootfs")
    planted_cgroup.mkdir(parents=True)
    try:
        found = leftovers(host, fake)
        kinds = sorted({f.split(":")[0] for f in found})
        assert kinds == ["cgroup", "mount", "path"], found
        assert any(f.endswith(f"/var/lib/sdctr/containers/{fake}") for f in found), found
    finally:
        host.sh(f"umount /run/sdctr/{fake}/rootfs; rm -rf /var/lib/sdctr/containers/{fake} /run/sdctr/{fake}")
        planted_cgroup.rmdir()
    assert leftovers(host, fake) == []


def test_detached_container_is_a_unit_with_enforced_limits(host: Machine) -> None:
    cid = run_d(host, "-c", "512", "-m", "64m", "busybox", "sh", "-c", "echo hello; sleep 1000")
    try:
        status = host.exec("systemctl", "status", "--no-pager", unit_of(cid)).stdout
        assert "active (running)" in status
        assert "limit: 64.0M" in status
        assert "sdctr container " in status
        # the kernel's own files, read from the machine, not through sdctr
        assert (host_cgroup(host, cid, "cpu") / "cpu.shares").read_text().strip() == "512"
        assert (host_cgroup(host, cid, "memory") / "memory.limit_in_bytes").read_text().strip() == "67108864"
        wait_for(lambda: "hello" in host.exec("journalctl", "--no-pager", "-u", unit_of(cid)).stdout,
                   what="hello in journalctl -u")
        assert sdctr(host, "logs", cid).stdout == "hello\n"
        unit_file = host.exec("test", "-f", f"/run/systemd/system/{unit_of(cid)}", check=False)
        assert (unit_file.returncode == 0) == unit_files(host)
        # no waiter of ours stays: the unit's main process is the container's PID 1
        main = host.exec("systemctl", "show", "-p", "MainPID", "--value", unit_of(cid)).stdout.strip()
        comm = host.exec("cat", f"/proc/{main}/comm").stdout.strip()
        # a sealed memfd copy of the host's reaper (tests/testhost/test_pid1_exe.py)
        assert comm in ("memfd:tini", "memfd:tini-stat", "memfd:catatonit"), comm
    finally:
        sdctr(host, "rm", "-f", cid)
    assert leftovers(host, cid) == []


def test_oom_killed_container_exits_137(host: Machine) -> None:
    cid = run_d(host, "-m", "32m", "busybox", "dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1")
    try:
        assert sdctr(host, "wait", cid).stdout.strip() == "137"
        doc = inspect(host, cid)
        assert doc["State"]["OOMKilled"] is True
        assert doc["State"]["ExitCode"] == 137
        assert "Exited (137)" in sdctr(host, "ps", "-a").stdout
        assert cid[:12] not in sdctr(host, "ps").stdout
    finally:
        sdctr(host, "rm", "-f", cid)


def test_inside_the_container(host: Machine) -> None:
    script = ("echo pid=$$; ps -o pid,comm | wc -l; hostname; "
              "(echo x > /proc/sysrq-trigger) 2>/dev/null && echo sysrq-writable || echo sysrq-denied; "
              "mount -t tmpfs none /mnt 2>/dev/null && echo mounted || echo mount-denied; "
              "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status")
    r = sdctr(host, "run", "--rm", "--name", "inside", "-h", "box", "busybox", "sh", "-c", script)
    out = r.stdout.splitlines()
    assert out[0] in ("pid=1", "pid=2"), out  # the command is PID 1, or the reaper's child
    assert int(out[1]) <= 6, r.stdout  # header, reaper, sh, ps, wc: none of the host's processes
    assert out[2] == "box"
    assert "sysrq-denied" in out and "mount-denied" in out
    caps = dict(line.split(":\t") for line in out if line.startswith(("CapEff", "NoNewPrivs", "Seccomp")))
    assert int(caps["CapEff"], 16) == docker.DEFAULT_CAPS_MASK
    assert caps["NoNewPrivs"].strip() == "1"
    assert caps["Seccomp"].strip() == "2"


def test_stop_delivers_sigterm_and_exit_codes_round_trip(host: Machine) -> None:
    cid = run_d(host, "busybox", "sh", "-c",
                "trap 'echo got TERM; exit 42' TERM; echo ready; while true; do sleep 0.1; done")
    try:
        wait_for(lambda: "ready" in sdctr(host, "logs", cid).stdout, what="the container to be ready")
        sdctr(host, "stop", cid)
        wait_for(lambda: "got TERM" in sdctr(host, "logs", cid).stdout, what="the trap's line")
        assert inspect(host, cid)["State"]["ExitCode"] == 42
        assert inspect(host, cid)["State"]["Status"] == "exited"
    finally:
        sdctr(host, "rm", "-f", cid)


@pytest.mark.parametrize(("command", "status"), [
    (["sh", "-c", "exit 3"], 3), (["no-such-command"], 127), (["/bin/noexec"], 126),
    (["sh", "-c", "kill -9 $$"], 137),
])
def test_foreground_run_exits_with_the_containers_status(host: Machine, command: list[str],
                                                          status: int) -> None:
    r = sdctr(host, "run", "--rm", "busybox", *command, check=False)
    assert r.returncode == status, r.stderr


def test_foreground_run_attaches_stdio(host: Machine) -> None:
    if unit_files(host):  # an old systemd takes no descriptors: output comes via the journal
        r = sdctr(host, "run", "--rm", "busybox", "sh", "-c", "echo out; echo oops >&2")
        assert (r.stdout, r.stderr) == ("out\n", "oops\n")  # stderr's line on stderr, as Docker
        r = sdctr(host, "run", "--rm", "-i", "busybox", "cat", check=False)
        assert r.returncode == 125 and "need systemd 236" in r.stderr
        return
    r = sdctr(host, "run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z; echo oops >&2",
              input="hello stdin\n")
    assert r.stdout == "HELLO STDIN\n"
    assert r.stderr == "oops\n"


def processes_under(pids: list[int]) -> list[tuple[int, int, str, str]]:
    """(pid, ppid, state, comm) of `pids` and all their descendants, zombies included (a zombie
    is in no cgroup.procs since Linux 5.3, but still in /proc until its parent reaps it)."""
    table = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        table[int(fields["Pid"])] = (int(fields["PPid"]), fields["State"].split()[0], fields["Name"].strip())
    found, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid in table and pid not in found:
            found.add(pid)
            todo += [child for child, (ppid, _, _) in table.items() if ppid == pid]
    return sorted((pid, *table[pid]) for pid in found)


def test_zombies_are_reaped(host: Machine) -> None:
    # the shell's subshells exit at once, leaving orphans that the container's PID 1 must reap;
    # the positive control: a sleep that exec'd over a shell never reaps the child it started
    cid = run_d(host, "busybox", "sh", "-c",
                "(sleep 0.2 &); (sleep 0.2 &); sh -c 'sleep 0.1 & exec sleep 1000' & sleep 1000")
    try:
        time.sleep(1.5)
        living = [int(p) for p in (host_cgroup(host, cid, "pids") / "cgroup.procs").read_text().split()]
        procs = processes_under(living)
        comm = {pid: name for pid, _, _, name in procs}
        zombies = [(pid, ppid) for pid, ppid, state, _ in procs if state == "Z"]
        assert [comm.get(ppid) for _, ppid in zombies] == ["sleep"], procs  # the control's, no other
    finally:
        sdctr(host, "rm", "-f", cid)


def test_rm_and_auto_rm_leave_nothing(host: Machine) -> None:
    cid = run_d(host, "--rm", "busybox", "sh", "-c", "sleep 0.5")
    # everything but its exit status, kept a while for a `wait` that comes late (state.EXIT_KEPT),
    # and swept by the next command once older
    kept = f"/run/sdctr/{cid}.exit.json"
    wait_for(lambda: leftovers(host, cid) == [f"path: {kept}"], what="--rm to remove everything")
    host.exec("touch", "-d", "2 minutes ago", kept)
    sdctr(host, "ps", "-a")
    assert leftovers(host, cid) == []
    cid = run_d(host, "busybox", "sh", "-c", "echo data > /file; sleep 1000")
    sdctr(host, "rm", "-f", cid)
    assert leftovers(host, cid) == []


def test_systemctl_restart_brings_the_container_back(host: Machine) -> None:
    cid = run_d(host, "--name", "again", "busybox", "sh", "-c", "echo started; sleep 1000")
    try:
        first = host.exec("systemctl", "show", "-p", "MainPID", "--value", unit_of(cid)).stdout.strip()
        host.exec("systemctl", "restart", unit_of(cid))
        second = host.exec("systemctl", "show", "-p", "MainPID", "--value", unit_of(cid)).stdout.strip()
        assert second not in (first, "0")
        assert inspect(host, "again")["State"]["Running"] is True
        wait_for(lambda: sdctr(host, "logs", "again").stdout.count("started") == 2,
                   what="the second start's line")
    finally:
        sdctr(host, "rm", "-f", cid)


def test_lifecycle_verbs(host: Machine) -> None:
    cid = run_d(host, "--name", "life", "-m", "48m", "--pids-limit", "50", "busybox", "sleep", "1000")
    try:
        assert sdctr(host, "ps", "-q").stdout.split() == [cid[:12]]
        rows = [json.loads(line) for line in sdctr(host, "ps", "--format", "json").stdout.splitlines()]
        assert rows[0]["Names"] == "life" and rows[0]["State"] == "running"
        assert sdctr(host, "exec", "life", "cat", "/etc/hostname").stdout.strip() == cid[:12]
        assert sdctr(host, "exec", "-u", "app", "life", "id", "-u").stdout.strip() == "1000"
        # an exec'd command is confined as the container's own: capabilities, no_new_privs, seccomp
        status = sdctr(host, "exec", "life", "cat", "/proc/self/status").stdout
        assert f"CapEff:\t{docker.DEFAULT_CAPS_MASK:016x}" in status and "NoNewPrivs:\t1" in status
        assert "Seccomp:\t2" in status
        assert sdctr(host, "exec", "life", "sh", "-c", "exit 5", check=False).returncode == 5
        assert sdctr(host, "exec", "life", "nope", check=False).returncode == 127
        assert "sleep 1000" in sdctr(host, "exec", "life", "ps").stdout  # its PID namespace
        assert "sleep 1000" in sdctr(host, "top", "life").stdout
        stats = sdctr(host, "stats", "--no-stream", "life").stdout
        assert "life" in stats and " / 48MiB " in stats
        doc = inspect(host, "life")
        assert doc["HostConfig"]["Memory"] == 48 * 1024 * 1024
        assert doc["HostConfig"]["PidsLimit"] == 50
        assert doc["Unit"] == unit_of(cid)
        assert doc["State"]["Pid"] > 0
        sdctr(host, "kill", "-s", "TERM", "life")
        assert sdctr(host, "wait", "life").stdout.strip() == "143"
        r = sdctr(host, "rm", "life")
        assert r.stdout.strip() == "life"
    finally:
        sdctr(host, "rm", "-f", cid, check=False)
    assert leftovers(host, cid) == []


def test_user_env_workdir_volumes_read_only(host: Machine) -> None:
    host.sh("mkdir -p /srv/vol && chmod 777 /srv/vol && echo from-host > /srv/vol/in")
    r = sdctr(host, "run", "--rm", "-u", "1000:1000", "-e", "GREETING=hi", "-w", "/tmp",
              "-v", "/srv/vol:/vol", "-v", "/srv/vol:/rovol:ro", "--read-only", "busybox", "sh", "-c",
              "id -u; id -g; echo $GREETING; pwd; cat /vol/in; "
              "echo new > /vol/out && echo rw-ok; (echo x > /rovol/x) 2>/dev/null || echo ro-denied; "
              "(echo x > /etc/x) 2>/dev/null || echo root-ro")
    assert r.stdout.split() == ["1000", "1000", "hi", "/tmp", "from-host", "rw-ok", "ro-denied", "root-ro"]
    assert host.exec("cat", "/srv/vol/out").stdout == "new\n"
    # a missing host directory is created, as `docker run -v` does
    host.sh("rm -rf /srv/made-by-run")
    sdctr(host, "run", "--rm", "-v", "/srv/made-by-run:/made", "busybox", "touch", "/made/here")
    assert host.exec("ls", "/srv/made-by-run").stdout.split() == ["here"]
    host.sh("rm -rf /srv/made-by-run")


@pytest.mark.parametrize(("args", "message"), [
    (["-m", "10xb", "busybox", "true"], "--memory '10xb' is not a size"),
    (["--pull", "never", "no-such-image", "true"], "no such image"),  # pulling: test_pull_and_run.py
    (["busybox"], "no command specified"),
    (["-c", "1", "busybox", "true"], "--cpu-shares 1 is outside"),
])
def test_bad_input_is_one_line_status_125_and_creates_nothing(host: Machine, args: list[str],
                                                              message: str) -> None:
    before = host.sh("ls /var/lib/sdctr/containers 2>/dev/null | sort; systemctl list-units --all "
                     "--plain --no-legend 'ctr-*'").stdout
    r = sdctr(host, "run", "-d", *args, check=False)
    assert r.returncode == 125
    assert r.stdout == ""
    assert r.stderr.startswith("sdctr: error: ") and message in r.stderr.splitlines()[0]
    after = host.sh("ls /var/lib/sdctr/containers 2>/dev/null | sort; systemctl list-units --all "
                    "--plain --no-legend 'ctr-*'").stdout
    assert before == after


def test_duplicate_name_is_refused(host: Machine) -> None:
    cid = run_d(host, "--name", "dup", "busybox", "sleep", "1000")
    try:
        r = sdctr(host, "run", "-d", "--name", "dup", "busybox", "true", check=False)
        assert r.returncode == 125
        assert "name 'dup' is already in use" in r.stderr
        assert len(sdctr(host, "ps", "-aq").stdout.split()) == 1
    finally:
        sdctr(host, "rm", "-f", cid)


def test_failed_start_names_the_unit_and_leaves_nothing(host: Machine) -> None:
    # the init cannot find the user: the unit's start job fails, and sdctr says which unit and why
    before = host.sh("ls /var/lib/sdctr/containers | sort").stdout
    r = sdctr(host, "run", "-d", "-u", "nosuchuser", "busybox", "true", check=False)
    assert r.returncode == 125, r.stderr
    # the init's own line first, as Docker's one line; then the unit, in the hint
    first, hint = r.stderr.splitlines()
    assert first == "sdctr: error: unable to find user nosuchuser: no matching entries in passwd file", \
        r.stderr
    assert hint.startswith("sdctr: hint: ctr-") and ".service failed to start" in hint, r.stderr
    assert host.sh("ls /var/lib/sdctr/containers | sort").stdout == before
    units = host.exec("systemctl", "list-units", "--all", "--plain", "--no-legend", "ctr-*").stdout
    assert "failed" not in units


def test_tty_gives_the_container_a_terminal(host: Machine) -> None:
    if unit_files(host):
        pytest.skip("no terminal can be passed to a unit on systemd < 236 (see the stdio test)")
    r = sdctr(host, "run", "--rm", "-t", "busybox", "sh", "-c", "tty; [ -t 1 ] && echo is-a-tty")
    lines = r.stdout.replace("\r", "").split()
    assert lines[0].startswith("/dev/"), r.stdout
    assert "is-a-tty" in lines


def test_restart_policy_is_systemds(host: Machine) -> None:
    cid = run_d(host, "--restart", "on-failure", "busybox", "sh", "-c", "echo run; sleep 0.3; exit 1")
    try:
        assert host.exec("systemctl", "show", "-p", "Restart", "--value", unit_of(cid)).stdout.strip() \
            == "on-failure"
        wait_for(lambda: sdctr(host, "logs", cid).stdout.count("run") >= 3, timeout=30,
                   what="systemd to restart the failing container")
    finally:
        sdctr(host, "rm", "-f", cid)


def test_ephemeral_discards_the_writable_layer_at_each_stop(host: Machine) -> None:
    cid = run_d(host, "--ephemeral", "busybox", "sh", "-c",
                "test -e /scratch && echo found || echo clean; touch /scratch; sleep 1000")
    keep = run_d(host, "busybox", "sh", "-c",
                 "test -e /scratch && echo found || echo clean; touch /scratch; sleep 1000")
    try:
        for c in (cid, keep):
            wait_for(lambda c=c: "clean" in sdctr(host, "logs", c).stdout, what="the first run")
            sdctr(host, "restart", "-t", "1", c)
        wait_for(lambda: sdctr(host, "logs", cid).stdout.split() == ["clean", "clean"],
                   what="an ephemeral container to start clean again")
        wait_for(lambda: sdctr(host, "logs", keep).stdout.split() == ["clean", "found"],
                   what="a plain container to keep its writable layer")
    finally:
        sdctr(host, "rm", "-f", cid, keep)


def test_logs_tail_and_timestamps(host: Machine) -> None:
    cid = run_d(host, "busybox", "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; sleep 1000")
    try:
        wait_for(lambda: "line5" in sdctr(host, "logs", cid).stdout, what="five lines")
        assert sdctr(host, "logs", "-n", "2", cid).stdout == "line4\nline5\n"
        stamped = sdctr(host, "logs", "-t", "-n", "1", cid).stdout
        assert stamped.endswith(" line5\n") and stamped[:4].isdigit() and "T" in stamped[:20]
    finally:
        sdctr(host, "rm", "-f", cid)


def test_create_then_start_and_cpu_and_pids_limits(host: Machine) -> None:
    cid = sdctr(host, "create", "--name", "later", "--cpus", "0.5", "--pids-limit", "64",
                "busybox", "sleep", "1000").stdout.strip()
    try:
        assert "Created" in sdctr(host, "ps", "-a").stdout
        assert inspect(host, "later")["State"]["Status"] == "created"
        assert sdctr(host, "start", "later").stdout.strip() == "later"
        assert inspect(host, "later")["State"]["Running"] is True
        cpu = host_cgroup(host, cid, "cpu")
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
        assert (host_cgroup(host, cid, "pids") / "pids.max").read_text().strip() == "64"
    finally:
        sdctr(host, "rm", "-f", cid)
    assert leftovers(host, cid) == []


CTRL_C = r"""
import signal, subprocess, sys, time
cli = subprocess.Popen(sys.argv[1:] + ["run", "--rm", "busybox", "sh", "-c",
                       "trap 'echo got INT; exit 3' INT; echo ready; while true; do sleep 0.1; done"],
                       stdout=subprocess.PIPE, text=True)
assert cli.stdout.readline() == "ready\n"
cli.send_signal(signal.SIGINT)  # what Ctrl-C at the terminal sends the foreground sdctr
out = cli.stdout.read()
print(repr(out), cli.wait())
"""


def test_ctrl_c_reaches_the_foreground_container(host: Machine) -> None:
    flags = ["--unit-file-mode"] if unit_files(host) else []
    r = host.exec("python3", "-c", CTRL_C, "sdctr", *flags)
    assert r.stdout.strip() == "'got INT\\n' 3", r.stdout + r.stderr


def test_export_save_and_load(host: Machine) -> None:
    """`export` is the container's file system as it left it; `save | load` carries the image to
    another store with its name and id."""
    cid = run_d(host, "busybox", "sh", "-c", "echo made > /root/made; rm /etc/group")
    try:
        assert sdctr(host, "wait", cid).stdout.strip() == "0"
        sdctr(host, "export", "-o", "/tmp/export.tar", cid)
        names = host.exec("tar", "-tf", "/tmp/export.tar").stdout.split()
        assert "root/made" in names and "bin/busybox" in names and "etc/passwd" in names
        assert "etc/group" not in names  # the whiteout hides it, as in the container
        assert host.sh("tar -xOf /tmp/export.tar root/made").stdout == "made\n"
        assert "export" not in host.exec("cat", "/proc/self/mountinfo").stdout
    finally:
        sdctr(host, "rm", cid)
    # a running one is read through its own mount (no second overlay on a live writable layer)
    cid = run_d(host, "busybox", "sh", "-c", "echo live > /root/live; sleep 1000")
    try:
        wait_for(lambda: "root/live" in host.sh(f"sdctr export {cid} | tar -tf -").stdout.split(),
                 what="the running export")
        assert sdctr(host, "inspect", "-f", "{{.State.Status}}", cid).stdout.strip() == "running"
    finally:
        sdctr(host, "rm", "-f", cid)
    image_id = json.loads(sdctr(host, "image", "inspect", "busybox").stdout)[0]["Id"]
    loaded = host.sh("sdctr save busybox | sdctr --root /tmp/other-store load").stdout
    assert loaded == "Loaded image: busybox:latest\n"
    other = json.loads(host.exec("sdctr", "--root", "/tmp/other-store", "image", "inspect", "busybox").stdout)
    assert other[0]["Id"] == image_id
    host.exec("rm", "-rf", "/tmp/other-store", "/tmp/export.tar")


def test_a_container_cannot_read_a_host_block_device(host: Machine, tmp_path: Path) -> None:
    """The attack from issue 10: root in a container makes a node for a host disk and reads it.
    A loop device over a file of ours stands in for the disk (the kernel's devices are shared by
    every namespace, so the test host's containers see the machine's majors and minors)."""
    disk = tmp_path / "disk"
    disk.write_bytes(b"HOST-DISK-SECRET" + b"\0" * (1 << 20))
    loop = subprocess.run(["losetup", "--find", "--show", str(disk)], capture_output=True, text=True,
                          check=True).stdout.strip()
    try:
        st = os.stat(loop)
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        script = (f"mknod /tmp/disk b {major} {minor} && echo made; "
                  "head -c 16 /tmp/disk 2>&1; echo; "
                  # an image's own 0666 node is the same node: the cgroup, not the mode, decides
                  "chmod 666 /tmp/disk && head -c 16 /tmp/disk 2>&1; echo; "
                  "head -c 4 /dev/zero | wc -c; echo ok > /dev/null && echo null-ok")
        r = sdctr(host, "run", "--rm", "busybox", "sh", "-c", script, check=False)
        assert "made" in r.stdout, r.stdout + r.stderr  # mknod stays allowed, as in Docker
        assert "HOST-DISK-SECRET" not in r.stdout
        assert r.stdout.count("Operation not permitted") == 2, r.stdout
        assert "\n4\n" in r.stdout and "null-ok" in r.stdout  # the pseudo devices still work
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)


def test_a_chatty_container_loses_no_line(host: Machine) -> None:
    """journald's per-unit rate limit kept 37,500 of 500,000 lines, without a word."""
    lines = 500_000
    cid = run_d(host, "busybox", "seq", "1", str(lines))
    try:
        assert sdctr(host, "wait", cid).stdout.strip() == "0"
        count = f"sdctr logs {cid} | wc -l"

        def settled() -> str | None:  # journald may still be writing what it was handed
            n = host.sh(count, timeout=300).stdout.strip()
            return n if n == str(lines) else None

        try:
            wait_for(settled, timeout=120, what=f"{lines} lines in sdctr logs")
        except AssertionError:
            raise AssertionError(f"sdctr logs has {host.sh(count).stdout.strip()} of {lines} lines") from None
        assert host.sh(f"sdctr logs {cid} | tail -n 1").stdout == f"{lines}\n"
    finally:
        sdctr(host, "rm", "-f", cid)


def test_host_users_cannot_read_records_or_reach_a_running_root(host: Machine) -> None:
    """A record holds the environment; a running container's root may hold a setuid binary its
    root made. Neither is any other host user's business (issue 10: config.json was 0644)."""
    cid = run_d(host, "-e", "SECRET=hunter2", "busybox", "sh", "-c",
                "cp /bin/busybox /suid && chmod 4755 /suid && sleep 1000")
    try:
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
        record = f"/var/lib/sdctr/containers/{cid}/config.json"
        assert "hunter2" in host.exec("cat", record).stdout  # root reads it: the probe works
        r = host.exec(*as_nobody, "cat", record, check=False)
        assert r.returncode != 0 and "hunter2" not in r.stdout, r.stdout
        assert "Permission denied" in r.stderr, r.stderr
        suid = f"/run/sdctr/{cid}/rootfs/suid"
        wait_for(lambda: host.exec("test", "-u", suid, check=False).returncode == 0,
                 what="the container's setuid copy")
        r = host.exec(*as_nobody, suid, "id", "-u", check=False)
        assert r.returncode != 0 and r.stdout.strip() != "0", r.stdout
        for d in ("/var/lib/sdctr", "/run/sdctr"):
            mode = host.exec("stat", "-c", "%a", d).stdout.strip()
            assert mode == "700", (d, mode)
    finally:
        sdctr(host, "rm", "-f", cid)
