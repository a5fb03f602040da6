"""Issue 14, as a Docker user checks it: a foreground run's lines in the journal, stdout and
stderr apart in `logs`."""

# ruff: noqa: F811  (every test takes test_runtime's `host` fixture, imported by its name)
from __future__ import annotations

import json

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


# The one pty driver: runs argv[2:] with a pty as its terminal, as a user's shell would, and
# plays the steps (JSON, argv[1]) on it, printing one word per step that has something to say:
#   ["size", ROWS, COLS]            the terminal's size before the command starts
#   ["raw"]                         wait until the command has put it in raw mode (it relays keys)
#   ["read", TOKEN, SECONDS]        read until TOKEN (a new shell's prompt: what is typed before
#                                   it reads may be dropped)
#   ["type", TEXT, TOKEN, TRIES, SECONDS]  type TEXT until TOKEN is seen: prints saw or missed
#   ["keys", HEX]                   type these bytes (detach keys)
#   ["resize", ROWS, COLS]          the window resized (SIGWINCH)
#   ["exit", SECONDS]               until the command exits: prints its status, or did-not-end
#   ["output"]                      until the command closes the terminal: prints what it showed
#                                   (repr) and its status
PTY_DRIVER = r"""
import fcntl, json, os, pty, select, struct, sys, termios, time
steps, argv = json.loads(sys.argv[1]), sys.argv[2:]
size = next((step[1:] for step in steps if step[0] == "size"), None)
pid, master = pty.fork()
if pid == 0:
    if size:
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    os.execvp(argv[0], argv)
shown = b""
def read_until(token, timeout):
    global shown
    buf, end = b"", time.monotonic() + timeout
    while token not in buf and time.monotonic() < end:
        if select.select([master], [], [], 0.2)[0]:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the other side has gone
                data = b""
            if not data:
                break
            buf += data
    shown += buf
    return buf
for step, *arg in steps:
    if step == "raw":
        end = time.monotonic() + 20
        while termios.tcgetattr(master)[3] & termios.ICANON and time.monotonic() < end:
            time.sleep(0.05)
    elif step == "read":
        read_until(arg[0].encode(), arg[1])
    elif step == "type":
        text, token, tries, timeout = arg
        for _ in range(tries):
            os.write(master, text.encode())
            if token.encode() in read_until(token.encode(), timeout):
                print("saw")
                break
        else:
            print("missed")
    elif step == "keys":
        os.write(master, bytes.fromhex(arg[0]))
    elif step == "resize":
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", *arg, 0, 0))
        time.sleep(0.5)
    elif step == "exit":
        end = time.monotonic() + arg[0]
        while time.monotonic() < end:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print(os.waitstatus_to_exitcode(status))
                break
            read_until(b"\0", 0.2)
        else:
            print("did-not-end")
            os.kill(pid, 9)
    elif step == "output":
        read_until(b"\0", 60)
        print(repr(shown.decode()), os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""

HI = ["type", "echo hi-$((1+2))\r", "hi-3", 1, 10]  # a command typed, its output seen
EXIT_7 = ["keys", b"exit 7\r".hex()]
CTRL_P_Q, CTRL_X_Y = ["keys", "1011"], ["keys", "1879"]  # Docker's detach keys; --detach-keys ctrl-x,y
# (a resize after `stty size` sees 33x111: a shell only starting may flush what was typed before it read)
RESIZED = [["size", 33, 111], ["raw"], ["type", "stty size\r", "33 111", 5, 2], ["resize", 40, 120],
           ["type", "stty size\r", "40 120", 1, 10], CTRL_P_Q, ["exit", 20]]


def typed(then: list[object], prompt: bool = False) -> list[list[object]]:
    """A command typed once the terminal is raw (after a new shell's prompt), then `then`."""
    return [["raw"], *([["read", "# ", 20]] if prompt else []), HI, then, ["exit", 10]]


def in_a_terminal(host: Machine, steps: list[list[object]], *args: str) -> list[str]:
    """`sdctr ARGS` in a terminal the steps play on (PTY_DRIVER): the words it printed."""
    mode = ["--unit-file-mode"] if unit_files(host) else []
    r = host.exec("python3", "-c", PTY_DRIVER, json.dumps(steps), "sdctr", *mode, *args)
    return r.stdout.split()


def test_a_foreground_run_it_is_in_the_journal(host: Machine) -> None:
    if unit_files(host):
        pytest.skip("no terminal can be passed to a unit on systemd < 236")
    try:
        r = in_a_terminal(host, typed(EXIT_7, prompt=True), "run", "-it", "--name", "fgt", "busybox", "sh")
        assert r == ["saw", "7"]
        wait_for(lambda: "hi-3" in sdctr(host, "logs", "fgt").stdout, what="the terminal's output in logs")
    finally:
        sdctr(host, "rm", "-f", "fgt", check=False)


def test_run_dit_then_attach_and_detach_with_dockers_keys(host: Machine) -> None:
    sdctr(host, "run", "-dit", "--name", "box", "busybox", "sh")
    try:
        assert in_a_terminal(host, typed(CTRL_P_Q), "attach", "box") == ["saw", "0"]
        assert inspect(host, "box")["State"]["Running"]
        assert in_a_terminal(host, RESIZED, "attach", "box") == ["saw", "saw", "0"]
        r = in_a_terminal(host, typed(CTRL_X_Y), "attach", "--detach-keys", "ctrl-x,y", "box")
        assert r == ["saw", "0"], r
        assert inspect(host, "box")["State"]["Running"]
        r = sdctr(host, "attach", "--detach-keys", "ctrl-", "box", check=False)
        assert r.returncode == 125 and "--detach-keys 'ctrl-'" in r.stderr, r.stderr
        # the shell's exit ends attach with its status, as docker attach does
        assert in_a_terminal(host, typed(EXIT_7), "attach", "box") == ["saw", "7"]
        wait_for(lambda: not inspect(host, "box")["State"]["Running"], what="the container's end")
        assert "hi-3" in sdctr(host, "logs", "box").stdout  # a -t container's terminal is logged
    finally:
        sdctr(host, "rm", "-f", "box", check=False)


def test_a_foreground_run_it_resizes_and_detaches_with_dockers_keys(host: Machine) -> None:
    """`run -it`: the window's size at the start and after a resize (SIGWINCH) reach the
    container's pty; ^P^Q (or --detach-keys) detach, exit 0 and leave it running, attachable."""
    if unit_files(host):
        pytest.skip("no terminal can be passed to a unit on systemd < 236")
    try:
        sizes = in_a_terminal(host, RESIZED, "run", "-it", "--name", "fgr", "busybox", "sh")
        assert sizes == ["saw", "saw", "0"], sizes
        assert inspect(host, "fgr")["State"]["Running"]
        # the same shell, still there
        assert in_a_terminal(host, typed(EXIT_7), "attach", "fgr") == ["saw", "7"]
        wait_for(lambda: not inspect(host, "fgr")["State"]["Running"], what="the container's end")
        assert inspect(host, "fgr")["State"]["ExitCode"] == 7
        # after the hand-over the init journals the terminal, as a -dt container's
        wait_for(lambda: "hi-3" in sdctr(host, "logs", "fgr").stdout, what="the re-attached output in logs")
        r = in_a_terminal(host, typed(CTRL_X_Y, prompt=True), "run", "-it", "--detach-keys", "ctrl-x,y",
                          "--name", "fgk", "busybox", "sh")
        assert r == ["saw", "0"], r
        assert inspect(host, "fgk")["State"]["Running"]
        r = sdctr(host, "run", "-it", "--detach-keys", "ctrl-", "busybox", "true", check=False)
        assert r.returncode == 125 and "--detach-keys 'ctrl-'" in r.stderr, r.stderr
        # the command starts once the terminal is attached: it has its size, and what it writes
        # at once is seen (the status is the command's)
        for _ in range(3):
            mode = ["--unit-file-mode"] if unit_files(host) else []
            r = host.exec("python3", "-c", PTY_DRIVER, json.dumps([["size", 33, 111], ["output"]]), "sdctr",
                          *mode, "run", "--rm", "-it", "busybox", "sh", "-c",
                          "stty size; echo printed; exit 3")
            shown, status = r.stdout.strip().rsplit(" ", 1)
            assert (eval(shown).replace("\r", ""), status) == ("33 111\nprinted\n", "3"), r.stdout
        # without a terminal, -t still shows what the command wrote, and its status
        r = sdctr(host, "run", "--rm", "-t", "busybox", "sh", "-c", "echo quick; exit 3", check=False)
        assert r.returncode == 3 and r.stdout.replace("\r", "") == "quick\n", (r.returncode, r.stdout)
    finally:
        sdctr(host, "rm", "-f", "fgr", "fgk", check=False)


def test_run_di_keeps_stdin_open_for_attach(host: Machine) -> None:
    sdctr(host, "run", "-di", "--name", "cat", "busybox", "sh")
    try:
        assert inspect(host, "cat")["State"]["Running"]  # it used to read end of file and exit
        sdctr(host, "attach", "--detach-keys", "ctrl-x", "cat", input="echo from-stdin\n\x18")
        wait_for(lambda: "from-stdin" in sdctr(host, "logs", "cat").stdout, what="its output")
        assert inspect(host, "cat")["State"]["Running"]
    finally:
        sdctr(host, "rm", "-f", "cat", check=False)


def test_named_volumes_tmpfs_and_mount(host: Machine) -> None:
    try:
        assert sdctr(host, "volume", "create", "data").stdout == "data\n"
        assert sdctr(host, "volume", "ls", "-q").stdout.split() == ["data"]
        sdctr(host, "run", "--rm", "-v", "data:/srv", "busybox", "sh", "-c", "echo kept > /srv/f")
        # made on first use, and filled from the image's content at the path (copy-up)
        r = sdctr(host, "run", "--name", "user", "-v", "etcv:/etc", "--mount", "type=volume,src=data,dst=/d",
                  "busybox", "sh", "-c", "cat /d/f; cat /etc/group | head -1")
        assert r.stdout.splitlines() == ["kept", "root:x:0:"], r.stdout
        mountpoint = json_of(sdctr(host, "volume", "inspect", "etcv").stdout)[0]["Mountpoint"]
        assert host.exec("head", "-1", f"{mountpoint}/group").stdout == "root:x:0:\n"
        mounts = {m["Destination"]: m for m in inspect(host, "user")["Mounts"]}
        assert mounts["/d"]["Type"] == "volume" and mounts["/d"]["Name"] == "data"
        r = sdctr(host, "volume", "rm", "data", check=False)  # in use by a stopped container
        assert r.returncode == 1 and "volume data is in use by container user" in r.stderr, r.stderr
        sdctr(host, "rm", "user")
        assert "kept" in sdctr(host, "run", "--rm", "-v", "data:/d", "busybox", "cat", "/d/f").stdout
        sdctr(host, "volume", "rm", "data")
        assert sdctr(host, "volume", "prune").stdout.split() == ["Deleted", "Volumes:", "etcv"]
        assert sdctr(host, "volume", "ls", "-q").stdout == ""
        r = sdctr(host, "run", "--rm", "--tmpfs", "/scratch:size=1m",
                  "--mount", "type=tmpfs,dst=/t,tmpfs-size=2m", "busybox", "grep", "tmpfs /", "/proc/mounts")
        assert "/scratch tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k" in r.stdout, r.stdout
        assert "/t tmpfs rw,nosuid,nodev,noexec,relatime,size=2048k" in r.stdout, r.stdout
        r = sdctr(host, "run", "--rm", "--mount", "type=bind,src=/tmp,dst=/h,nosuch=1", "busybox", "true",
                  check=False)
        assert r.returncode == 125 and "unknown key 'nosuch'" in r.stderr.splitlines()[0], r.stderr
    finally:
        sdctr(host, "rm", "-f", "user", check=False)
        sdctr(host, "volume", "rm", "data", "etcv", check=False)


def json_of(text: str):  # type: ignore[no-untyped-def]
    return json.loads(text)
