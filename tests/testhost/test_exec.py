"""`sdctr exec` against a container that wants out (issue 10): what the exec'd process holds,
which terminal it can reach, what the container can see of it before it execs, and the cgroup it
lands in. Each attack is made from inside the container, as its root, through sdctr itself."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from helpers.rootfs import BUSYBOX_ROOTFS_SH
from helpers.testhost import Machine, wait_for

pytestmark = pytest.mark.testhost

MAKE_IMAGE = r"""
set -e
rm -rf /tmp/bb && sh -s /tmp/bb < /tmp/busybox-rootfs.sh
tar -C /tmp/bb -cf /tmp/bb.tar .
sdctr import /tmp/bb.tar busybox >/dev/null
"""


@pytest.fixture(scope="module")
def box(testhost: Machine) -> Iterator[tuple[Machine, str]]:
    """The session's test host with one running busybox container, by name."""
    testhost.cp(BUSYBOX_ROOTFS_SH, "/tmp/busybox-rootfs.sh")
    testhost.sh(MAKE_IMAGE)
    testhost.exec("sdctr", "run", "-d", "--name", "target", "busybox", "sleep", "100000")
    yield testhost, "target"
    testhost.exec("sdctr", "rm", "-f", "target", check=False)


# Runs `sdctr exec` (argv after the script) with a pty as its controlling terminal, as an
# administrator's shell would, and prints the caller's /proc/self/stat and the output.
IN_A_TERMINAL = r"""
import os, pty, sys
pid, master = pty.fork()
if pid == 0:
    os.execvp("sh", ["sh", "-c", 'cat /proc/$$/stat; exec "$@"', "sh", *sys.argv[1:]])
out = b""
while True:
    try:
        data = os.read(master, 65536)
    except OSError:
        break
    if not data:
        break
    out += data
_, status = os.waitpid(pid, 0)
print(repr(out.decode()), os.waitstatus_to_exitcode(status))
"""


def stat_fields(line: str) -> tuple[int, int, int]:
    """pid, session (field 6) and controlling terminal (field 7) of a /proc/<pid>/stat line."""
    pid, rest = line.split(" ", 1)
    fields = rest.rsplit(")", 1)[1].split()
    return int(pid), int(fields[3]), int(fields[4])


def in_a_terminal(host: Machine, *argv: str) -> tuple[list[str], int]:
    r = host.exec("python3", "-c", IN_A_TERMINAL, *argv)
    out, status = r.stdout.strip().rsplit(" ", 1)
    return [line for line in eval(out).splitlines() if line.strip()], int(status)


def test_exec_runs_in_a_session_of_its_own_without_the_callers_terminal(box: tuple[Machine, str]) -> None:
    """TIOCSTI needs the terminal to be the caller's controlling one: a process in the caller's
    session could type commands into the administrator's shell. The exec'd process must lead a
    session of its own, have no controlling terminal, and not even hold the caller's terminal
    (with it, a background process could read the administrator's keys after exec returned):
    its stdio are pipes that sdctr relays."""
    host, name = box
    script = "cat /proc/$$/stat; for f in 0 1 2; do readlink /proc/$$/fd/$f; done; echo relayed"
    lines, status = in_a_terminal(host, "sdctr", "exec", "-i", name, "sh", "-c", script)
    assert status == 0, lines
    _, caller_session, caller_tty = stat_fields(lines[0])
    assert caller_tty != 0 and caller_session != 0  # the probe works: the caller has a terminal
    pid, session, tty = stat_fields(lines[1])
    assert session == pid, lines[1]  # a session leader (the caller's session is not even visible)
    assert tty == 0, lines[1]
    assert [line.split(":")[0] for line in lines[2:5]] == ["pipe"] * 3, lines
    assert lines[5].strip() == "relayed", lines


def test_exec_t_gets_a_pty_of_the_containers_devpts(box: tuple[Machine, str]) -> None:
    host, name = box
    script = "tty; stat -c %d /dev/pts; stat -L -c %d /proc/self/fd/0; cat /proc/self/stat"
    lines, status = in_a_terminal(host, "sdctr", "exec", "-t", name, "sh", "-c", script)
    assert status == 0, lines
    assert stat_fields(lines[0])[2] != 0  # the caller has a terminal of its own
    assert lines[1].strip() == "/dev/pts/0", lines
    assert lines[2] == lines[3], lines  # the same file system: the container's own devpts
    pid, session, tty = stat_fields(lines[4])
    assert session == pid and tty != 0, lines[4]  # its own session, with the pty as its terminal
    # and without a caller's terminal (a pipe), the same
    r = host.exec("sdctr", "exec", "-t", name, "tty")
    assert r.stdout.strip() == "/dev/pts/0", r.stdout + r.stderr


def test_exec_holds_no_descriptor_but_its_stdio(box: tuple[Machine, str]) -> None:
    """Not sdctr's (D-Bus, a lock), and not one the caller happened to leave open: fd 9 here is
    a host file the container must not read."""
    host, name = box
    host.exec("sh", "-c", "echo host-only > /tmp/host-only")
    r = host.exec("sh", "-c", f"exec 9</tmp/host-only; sdctr exec {name} sh -c 'ls /proc/$$/fd; cat <&9'",
                  check=False)
    assert r.stdout.split() == ["0", "1", "2"], r.stdout + r.stderr
    assert "host-only" not in r.stdout
    r = host.exec("sdctr", "exec", "-t", name, "sh", "-c", "ls /proc/$$/fd; true")  # sh, not ls
    assert r.stdout.split() == ["0", "1", "2"], r.stdout


# `sdctr exec <name> no-such-command` with its stderr a full pipe: the exec'ing process blocks
# on its error line, after it dropped to the container's capabilities and before any exec: the
# window a container process would aim at. Prints that process's PID in the container and its
# exe as the host sees it, then what a container process could read of it, then lets it finish.
STALLED = r"""
import fcntl, json, os, subprocess, sys, time
name = sys.argv[1]
r, w = os.pipe()
fcntl.fcntl(w, fcntl.F_SETFL, os.O_NONBLOCK)
try:
    while True:
        os.write(w, b"x" * 4096)
except BlockingIOError:
    pass
fcntl.fcntl(w, fcntl.F_SETFL, 0)
cli = subprocess.Popen(["sdctr", "exec", name, "no-such-command"], stderr=w, stdout=subprocess.DEVNULL)
os.close(w)
child, deadline = None, time.monotonic() + 30
while child is None and time.monotonic() < deadline:
    try:
        kids = open(f"/proc/{cli.pid}/task/{cli.pid}/children").read().split()
        if kids and "State:\tS" in open(f"/proc/{kids[0]}/status").read():
            child = kids[0]  # asleep: in write(2), its only wait
    except FileNotFoundError:
        pass
    time.sleep(0.1)
status = open(f"/proc/{child}/status").read()
nspid = [l.split()[-1] for l in status.splitlines() if l.startswith("NSpid:")][0]
caps = [l.split()[-1] for l in status.splitlines() if l.startswith("CapEff:")][0]
report = {"exe": os.readlink(f"/proc/{child}/exe"), "caps": caps}
attack = (f"cat /proc/{nspid}/environ >/dev/null && echo environ; "
          f"head -c 1 /proc/{nspid}/mem >/dev/null; readlink /proc/{nspid}/exe; true")
probe = subprocess.run(["sdctr", "exec", name, "sh", "-c", attack], capture_output=True, text=True)
report.update(stdout=probe.stdout, stderr=probe.stderr)
while os.read(r, 65536):
    pass
report["status"] = cli.wait()
print(json.dumps(report))
"""


def test_container_cannot_reach_an_exec_before_it_execs(box: tuple[Machine, str]) -> None:
    """Before its exec the process is ours (Python, the request in its memory) with the
    container's capabilities: non-dumpable, the container can neither read its memory or
    environment nor follow its /proc/<pid>/exe, and that exe is a sealed copy, not the host's
    python3 (CVE-2019-5736: the container would write through it)."""
    host, name = box
    report = json.loads(host.exec("python3", "-c", STALLED, name).stdout)
    assert report["status"] == 127, report
    assert report["caps"] == "00000000a80425fb", report  # the window after the drop: the probe works
    assert report["exe"] == "/memfd:sdctr-exec (deleted)", report
    assert "environ" not in report["stdout"] and "python" not in report["stdout"], report
    assert report["stderr"].count("Permission denied") == 2, report  # environ and mem


def test_exec_fails_with_one_line_when_the_cgroup_cannot_be_joined(box: tuple[Machine, str]) -> None:
    """An exec'd command outside the container's cgroup escapes its memory and pids limits and
    its device policy: no silent fallback. The pids hierarchy's cgroup.procs is made to swallow
    writes (a /dev/null over it), as a cgroup that refuses us would."""
    host, name = box
    unit = json.loads(host.exec("sdctr", "inspect", name).stdout)[0]["Unit"]
    cgroup = host.exec("systemctl", "show", "-p", "ControlGroup", "--value", unit).stdout.strip()
    procs = f"/sys/fs/cgroup/pids{cgroup}/cgroup.procs"
    host.exec("mount", "--bind", "/dev/null", procs)
    try:
        r = host.exec("sdctr", "exec", name, "echo", "ran", check=False)
    finally:
        host.exec("umount", procs)
    assert r.returncode == 125, r.stdout + r.stderr
    assert "ran" not in r.stdout
    assert r.stderr.count("\n") == 1 and "cannot join the container's cgroup" in r.stderr, r.stderr
    assert host.exec("sdctr", "exec", name, "echo", "ran").stdout == "ran\n"  # and it can again


def test_exec_starts_the_command_with_default_signals(box: tuple[Machine, str]) -> None:
    """Python ignores SIGPIPE and SIGXFSZ, and a background caller ignores SIGINT: none of it
    may reach the command (`yes | head` would never end, a shell could not trap ^C)."""
    host, name = box
    r = host.exec("sh", "-c", f"trap '' INT; sdctr exec {name} grep -E 'Sig(Ign|Blk)' /proc/self/status")
    assert r.stdout.split() == ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"], r.stdout


def test_attached_run_holds_pipes_not_the_callers_terminal(box: tuple[Machine, str]) -> None:
    """A foreground `run -i` from a terminal: the container gets relayed pipes, no terminal
    of the caller's, and its command is in the init's session, not the caller's."""
    host, _ = box
    script = "cat /proc/$$/stat; for f in 0 1 2; do readlink /proc/$$/fd/$f; done; echo relayed"
    lines, status = in_a_terminal(host, "sdctr", "run", "--rm", "-i", "busybox", "sh", "-c", script)
    assert status == 0, lines
    assert stat_fields(lines[0])[2] != 0  # the caller has a terminal
    _, session, tty = stat_fields(lines[1])
    assert session != 0 and tty == 0, lines[1]  # a session in the container, no terminal
    assert [line.split(":")[0] for line in lines[2:5]] == ["pipe"] * 3, lines
    assert lines[5].strip() == "relayed", lines


def test_attached_run_t_proxies_a_pty_of_its_own(box: tuple[Machine, str]) -> None:
    host, _ = box
    lines, status = in_a_terminal(host, "sdctr", "run", "--rm", "-t", "busybox", "sh", "-c",
                                  "cat /proc/$$/stat; exit 4")
    assert status == 4, lines
    caller_tty = stat_fields(lines[0])[2]
    _, session, tty = stat_fields(lines[1])
    assert session != 0 and tty not in (0, caller_tty), (lines, caller_tty)


def test_exec_d_env_file_and_t_term(box: tuple[Machine, str]) -> None:
    """Issue 14: `exec -d` returns at once and its command runs on (confined as any exec: a
    session of its own, no descriptor of ours); a command that cannot start says so, with
    Docker's status; `--env-file` as run's, -e winning; `-t` gives the caller's TERM (else
    xterm) and a pty `tty` names."""
    host, name = box
    r = host.sh(f"exec 9</etc/hostname; sdctr exec -d {name} sleep 4242")
    assert r.returncode == 0 and r.stdout == r.stderr == "", r
    ps = host.exec("sdctr", "exec", name, "ps", "-o", "pid,args").stdout
    pid = next(line.split()[0] for line in ps.splitlines() if line.endswith("sleep 4242"))
    probe = f"cat /proc/{pid}/stat; ls /proc/{pid}/fd; readlink /proc/{pid}/fd/1"
    lines = host.exec("sdctr", "exec", name, "sh", "-c", probe).stdout.split("\n")
    _, session, tty = stat_fields(lines[0])
    assert session == int(pid) and tty == 0, lines[0]
    assert lines[1:5] == ["0", "1", "2", "/dev/null"], lines
    host.exec("sdctr", "exec", name, "kill", pid)
    # the container's PID 1 reaps it: no zombie stays
    wait_for(lambda: "4242" not in host.exec("sdctr", "exec", name, "ps", "-o", "stat,args").stdout,
             what="the detached command's end")
    r = host.exec("sdctr", "exec", "-d", name, "no-such-command", check=False)
    assert r.returncode == 127 and "no-such-command" in r.stderr, (r.returncode, r.stderr)

    host.exec("sh", "-c", "printf 'FROM_FILE=yes\\n# a comment\\nBOTH=file\\n' > /tmp/exec.env")
    r = host.exec("sdctr", "exec", "--env-file", "/tmp/exec.env", "-e", "BOTH=flag", name,
                  "sh", "-c", 'echo "$FROM_FILE $BOTH"')
    assert r.stdout == "yes flag\n", r.stdout + r.stderr
    r = host.exec("sdctr", "exec", "--env-file", "/tmp/no-such.env", name, "true", check=False)
    assert r.returncode == 125 and "--env-file /tmp/no-such.env" in r.stderr, r.stderr

    r = host.exec("env", "TERM=vt220", "sdctr", "exec", "-t", name, "sh", "-c", 'echo "$TERM"; tty')
    assert r.stdout.replace("\r", "").split() == ["vt220", "/dev/pts/0"], r.stdout
    r = host.exec("env", "-u", "TERM", "sdctr", "exec", "-t", name, "sh", "-c", 'echo "$TERM"')
    assert r.stdout.strip() == "xterm", r.stdout
    assert host.exec("sdctr", "exec", name, "sh", "-c", 'echo "${TERM-unset}"').stdout == "unset\n"


def test_exec_dt_keeps_a_terminal_for_its_command(box: tuple[Machine, str]) -> None:
    """`exec -dt` (Docker's detached exec with a pty): returns at once, the command runs on with
    a terminal of the container's that stays open (no SIGHUP, no EIO when it writes), and nothing
    of the exec outlives it."""
    host, name = box
    r = host.exec("sdctr", "exec", "-dt", name, "sh", "-c", "tty > /tmp/dt; echo written; exec sleep 4244")
    assert r.returncode == 0 and r.stdout == r.stderr == "", r
    terminal = lambda: host.exec("sdctr", "exec", name, "cat", "/tmp/dt", check=False).stdout  # noqa: E731
    wait_for(lambda: terminal().startswith("/dev/pts/"), what="the detached command's terminal")
    time.sleep(1)  # a terminal closed under it would have ended it by now
    ps = host.exec("sdctr", "exec", name, "ps", "-o", "pid,tty,args").stdout
    sleeper = [line.split() for line in ps.splitlines() if line.endswith("sleep 4244")]
    assert len(sleeper) == 1 and sleeper[0][1] != "?", ps
    host.exec("sdctr", "exec", name, "kill", sleeper[0][0])
    def left() -> list[str]:  # the holder of the terminal is a sealed interpreter named sdctr-exec
        ps = host.exec("sdctr", "exec", name, "ps", "-o", "args").stdout.splitlines()
        return [line for line in ps if "sleep 4244" in line or "sdctr-exec" in line]

    wait_for(lambda: not left(), what="the detached command and its terminal's holder to end")
    r = host.exec("sdctr", "exec", "-dt", name, "no-such-command", check=False)
    assert r.returncode == 127 and "no-such-command" in r.stderr, (r.returncode, r.stderr)
