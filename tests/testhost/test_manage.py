"""The verbs a Docker user expects beyond run/stop/rm (issue 14): pause/unpause, rename, top, diff,
cp, commit, prune, df, info, version; under a real systemd, checked as that user would, with the
kernel's own files where the kernel is the judge."""

# ruff: noqa: F811  (every test takes test_runtime's `host` fixture, imported by its name)
from __future__ import annotations

import json
import time

import pytest
from helpers.testhost import Machine, wait_for
from test_runtime import CGROUP_FS, host, leftovers, run_d, sdctr, unit_of  # noqa: F401

pytestmark = pytest.mark.testhost

# written aside and renamed: the freezer may stop the shell between a truncation and its write
COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; sleep 0.05; done"


def counter(host: Machine, cid: str) -> int:
    """The container's counter, read through its mounted root from outside (exec would not run
    in a frozen container)."""
    return int(host.exec("cat", f"/run/sdctr/{cid}/rootfs/tmp/n").stdout)


def freezer_state(host: Machine, cid: str) -> str:
    """What the kernel says of the unit's cgroup, read on this machine: v1's freezer.state, or
    v2's cgroup.freeze ("1" frozen); "" where the cgroup does not exist."""
    base = f"sdctr-testhost-{host.name}/sdctr.slice/{unit_of(cid)}"
    path = (CGROUP_FS / "freezer" / base / "freezer.state" if host.state()["cgroup_layout"] == "v1"
            else CGROUP_FS / base / "cgroup.freeze")
    return path.read_text().strip() if path.exists() else ""


def test_pause_freezes_every_process_and_unpause_resumes_them(host: Machine) -> None:
    cid = run_d(host, "--name", "frozen", "busybox", "sh", "-c", COUNTER)
    other = run_d(host, "busybox", "sleep", "1000")
    try:
        n = f"/run/sdctr/{cid}/rootfs/tmp/n"
        wait_for(lambda: host.exec("test", "-s", n, check=False).returncode == 0, what="the counter")
        r = sdctr(host, "pause", "frozen")
        assert r.stdout == "frozen\n"
        assert freezer_state(host, cid) in ("FROZEN", "1")
        before = counter(host, cid)
        time.sleep(1)
        assert counter(host, cid) == before, "the counter advanced in a paused container"
        ps = sdctr(host, "ps").stdout
        line = next(x for x in ps.splitlines() if x.endswith("frozen"))
        assert "(Paused)" in line, ps
        assert sdctr(host, "ps", "-q", "--filter", "status=paused").stdout.split() == [cid[:12]]
        shown = sdctr(host, "inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "frozen").stdout
        assert shown == "paused true\n"
        assert freezer_state(host, other) in ("", "THAWED", "0")  # the others run on
        r = sdctr(host, "pause", "frozen", check=False)
        assert r.returncode == 1 and "is already paused" in r.stderr
        r = host.exec("timeout", "20", "sdctr", "exec", "frozen", "true", check=False)
        assert r.returncode == 1 and "is paused, unpause the container before exec" in r.stderr, r
        sdctr(host, "unpause", "frozen")
        assert freezer_state(host, cid) in ("", "THAWED", "0")
        wait_for(lambda: counter(host, cid) > before + 5, what="the counter to advance again")
        r = sdctr(host, "unpause", "frozen", check=False)
        assert r.returncode == 1 and r.stderr.startswith("sdctr: error: container frozen is not paused")
        assert sdctr(host, "pause", "nosuch", check=False).returncode == 1
        # a paused container stops as any other (Docker resumes it first), and leaves nothing
        sdctr(host, "pause", "frozen")
        sdctr(host, "stop", "-t", "2", "frozen")
        assert host.exec("systemctl", "is-active", unit_of(cid), check=False).stdout.strip() == "inactive"
        assert sdctr(host, "wait", cid).stdout.strip() == "143"  # the counter's sh died of SIGTERM
        sdctr(host, "rm", cid)
        assert leftovers(host, cid) == []
        r = sdctr(host, "pause", other[:12], check=False)
        assert r.returncode == 0
        sdctr(host, "rm", "-f", other)
        assert leftovers(host, other) == []
    finally:
        sdctr(host, "rm", "-f", cid, other, check=False)


# --- cp ---------------------------------------------------------------------------------------------

HOSTILE = ("mkdir -p /tmp/victim /data; ln -s /tmp/victim /out; ln -s ../../../../../../tmp/victim /data/up; "
           "ln -s /etc/hostname /secret; mkdir -p /devs; mknod /devs/disk b 8 0; echo ready; sleep 1000")


def test_cp_both_ways_and_never_through_a_containers_symlink(host: Machine) -> None:
    host.sh("rm -rf /tmp/victim /tmp/cp && mkdir -p /tmp/victim /tmp/cp/tree/sub && "
            "echo payload > /tmp/cp/f && echo a > /tmp/cp/tree/sub/a && ln -s a /tmp/cp/tree/sub/la")
    cid = run_d(host, "--name", "copied", "busybox", "sh", "-c", HOSTILE)
    try:
        wait_for(lambda: "ready" in sdctr(host, "logs", cid).stdout, what="the symlinks")
        # in: the container's symlinks lead to its own /tmp/victim, never the test host's
        sdctr(host, "cp", "/tmp/cp/f", "copied:/out/pwned")
        sdctr(host, "cp", "/tmp/cp/f", "copied:/data/up/pwned2")
        assert host.exec("ls", "-A", "/tmp/victim").stdout == "", "cp wrote outside the container"
        assert sdctr(host, "exec", "copied", "ls", "/tmp/victim").stdout.split() == ["pwned", "pwned2"]
        sdctr(host, "cp", "/tmp/cp/tree", "copied:/tmp/")
        assert sdctr(host, "exec", "copied", "cat", "/tmp/tree/sub/a").stdout == "a\n"
        assert sdctr(host, "exec", "copied", "readlink", "/tmp/tree/sub/la").stdout == "a\n"
        # out: a symlink comes out as a symlink; -L follows it inside the container
        sdctr(host, "cp", "copied:/secret", "/tmp/cp/got")
        assert host.exec("readlink", "/tmp/cp/got").stdout == "/etc/hostname\n"
        sdctr(host, "cp", "-L", "copied:/secret", "/tmp/cp/got2")
        assert host.exec("cat", "/tmp/cp/got2").stdout == cid[:12] + "\n"  # the container's hostname
        # a device node the container made does not become one on the host
        sdctr(host, "exec", "copied", "test", "-b", "/devs/disk")
        r = sdctr(host, "cp", "copied:/devs", "/tmp/cp/devs")
        assert "device node(s) not copied" in r.stderr
        assert host.exec("ls", "-A", "/tmp/cp/devs").stdout == ""
        sdctr(host, "cp", "copied:/tmp/tree/.", "/tmp/cp/back")
        assert host.exec("cat", "/tmp/cp/back/sub/a").stdout == "a\n"
        # tar streams, as `docker cp` makes and takes them
        names = host.sh(f"sdctr {'--unit-file-mode ' if getattr(host, 'mode', '') == 'unit-file' else ''}"
                        "cp copied:/tmp/tree - | tar -tf -").stdout.split()
        assert names == ["tree/", "tree/sub/", "tree/sub/a", "tree/sub/la"]
        host.sh("cd /tmp/cp && tar -cf - f | sdctr cp - copied:/data")
        assert sdctr(host, "exec", "copied", "cat", "/data/f").stdout == "payload\n"
        # Docker's exit codes: 1 for what is missing, 125 for what cannot be asked
        r = sdctr(host, "cp", "copied:/nope", "/tmp/cp/x", check=False)
        assert r.returncode == 1
        assert r.stderr.startswith("sdctr: error: no such file or directory in container copied")
        assert sdctr(host, "cp", "nosuch:/x", "/tmp/cp/x", check=False).returncode == 1
        assert sdctr(host, "cp", "/tmp/cp/f", "/tmp/cp/g", check=False).returncode == 125
        # a stopped container: its snapshot, mounted for the while
        sdctr(host, "stop", "copied")
        sdctr(host, "cp", "/tmp/cp/f", "copied:/stopped")
        sdctr(host, "start", "copied")
        assert sdctr(host, "exec", "copied", "cat", "/stopped").stdout == "payload\n"
        assert host.exec("ls", "-A", "/tmp/victim").stdout == ""
    finally:
        sdctr(host, "rm", "-f", cid, check=False)
        host.sh("rm -rf /tmp/victim /tmp/cp", check=False)
    assert leftovers(host, cid) == []


# --- rename, top, diff, commit ---------------------------------------------------------------------

CHANGES = ("echo new > /new; echo changed >> /etc/passwd; rm /bin/ls; mkdir -p /tmp/dd; echo x > /tmp/dd/f; "
           "echo ready; sleep 1000")


def test_rename_top_diff_and_commit(host: Machine) -> None:
    cid = run_d(host, "--name", "before", "busybox", "sh", "-c", CHANGES)
    image = ""
    try:
        wait_for(lambda: "ready" in sdctr(host, "logs", cid).stdout, what="the changes")
        # rename: the new name finds it, the old one no longer does; a taken name is refused
        assert sdctr(host, "rename", "before", "after").stdout == ""
        assert sdctr(host, "inspect", "-f", "{{.Name}}", "after").stdout == "after\n"
        assert sdctr(host, "inspect", "before", check=False).returncode == 1
        other = run_d(host, "--name", "taken", "busybox", "sleep", "1000")
        r = sdctr(host, "rename", "after", "taken", check=False)
        assert r.returncode == 125 and "already in use" in r.stderr
        sdctr(host, "rm", "-f", other)
        assert sdctr(host, "rename", "nosuch", "x", check=False).returncode == 1
        # top: the container's processes and no other, with ps's own options
        top = sdctr(host, "top", "after").stdout.splitlines()
        assert top[0].split()[:3] == ["UID", "PID", "PPID"]
        assert [line.split()[7:] for line in top[1:]].count(["sleep", "1000"]) == 1, top
        assert len(top) == 3, top  # the init that runs the command, and sleep
        assert sdctr(host, "top", "after", "-o", "pid,comm").stdout.split()[:2] == ["PID", "COMMAND"]
        # diff: Docker's lines, not the files sdctr mounts over (/etc/hostname, hosts, resolv.conf)
        assert sdctr(host, "diff", "after").stdout.splitlines() == [
            "C /bin", "D /bin/ls", "C /etc", "C /etc/passwd", "A /new", "C /tmp", "A /tmp/dd", "A /tmp/dd/f"]
        # commit: a new image with the changes, the container's command, and -c's
        out = sdctr(host, "commit", "-m", "a message", "-c", "ENV FOO=bar", "after", "committed:v1").stdout
        image = out.strip()
        assert image.startswith("sha256:") and len(image) == 71, out
        assert "committed" in sdctr(host, "images").stdout
        seen = sdctr(host, "run", "--rm", "committed:v1", "sh", "-c",
                     "cat /new; tail -n 1 /etc/passwd; test -e /bin/ls || echo gone; cat /tmp/dd/f; "
                     "echo $FOO; cat /etc/hostname").stdout.splitlines()
        assert seen[:5] == ["new", "changed", "gone", "x", "bar"]
        assert seen[5] != cid[:12]  # the committed container's hostname file is not in the image
        assert sdctr(host, "image", "inspect", "-f", "{{.Config.Cmd}}", "committed:v1").stdout.strip() \
            == f"[sh -c {CHANGES}]"
        # the container ran on, unpaused, through the commit
        assert sdctr(host, "inspect", "-f", "{{.State.Status}}", "after").stdout == "running\n"
    finally:
        sdctr(host, "rm", "-f", cid, check=False)
        if image:
            sdctr(host, "rmi", "committed:v1", check=False)


# --- prune, df, info, version ----------------------------------------------------------------------

def test_prune_df_info_and_version(host: Machine) -> None:
    up = run_d(host, "--name", "up", "busybox", "sleep", "1000")
    kept = run_d(host, "--name", "kept", "-l", "keep=yes", "busybox", "true")
    big = run_d(host, "--name", "big", "busybox", "sh", "-c", "dd if=/dev/zero of=/big bs=1M count=3")
    try:
        for cid in (kept, big):
            sdctr(host, "wait", cid)
        df = {line.split()[0]: line.split() for line in sdctr(host, "system", "df").stdout.splitlines()[1:]}
        assert df["Containers"][1:3] == ["3", "1"]  # TOTAL, ACTIVE
        assert df["Containers"][3].endswith("MB") and float(df["Containers"][3][:-2]) >= 3.1
        rows = [json.loads(x) for x in sdctr(host, "system", "df", "--format", "json").stdout.splitlines()]
        assert [r["Type"] for r in rows] == ["Images", "Containers"]
        info = json.loads(sdctr(host, "info", "--format", "json").stdout)
        assert (info["Containers"], info["ContainersRunning"], info["ContainersStopped"]) == (3, 1, 2)
        assert info["CgroupVersion"] == ("1" if host.state()["cgroup_layout"] == "v1" else "2")
        systemd = host.exec("systemctl", "--version").stdout.split()[1]
        assert info["SystemdVersion"] == int(systemd)
        assert sdctr(host, "info", "-f", "{{.Driver}} {{.CgroupDriver}}").stdout == "overlay systemd\n"
        assert "Server Version:" in sdctr(host, "info").stdout
        version = json.loads(sdctr(host, "version", "--format", "json").stdout)
        assert version["Client"]["Version"] == sdctr(host, "--version").stdout.split()[-1]
        assert version["Server"]["Components"][0]["Name"] == "systemd"
        # prune: no without -f and a "no"; with a label filter only the others; never a running one
        r = sdctr(host, "container", "prune", input="n\n")
        assert "Are you sure you want to continue? [y/N]" in r.stdout
        assert len(sdctr(host, "ps", "-aq").stdout.split()) == 3
        r = sdctr(host, "container", "prune", "-f", "--filter", "until=nonsense", check=False)
        assert r.returncode == 125
        r = sdctr(host, "container", "prune", "-f", "--filter", "label!=keep")
        assert r.stdout.startswith(f"Deleted Containers:\n{big}\n\nTotal reclaimed space: "), r.stdout
        assert float(r.stdout.split()[-1].rstrip("MB")) >= 3.1
        assert sorted(sdctr(host, "ps", "-aq").stdout.split()) == sorted([up[:12], kept[:12]])
        sdctr(host, "tag", "busybox", "spare:1")
        r = sdctr(host, "system", "prune", "-f", "-a")
        assert f"Deleted Containers:\n{kept}\n" in r.stdout and "untagged: spare:1" not in r.stdout
        assert sdctr(host, "ps", "-aq").stdout.split() == [up[:12]]
        sdctr(host, "rm", "-f", up)
        r = sdctr(host, "system", "prune", "-f", "-a")  # busybox is unused now: -a removes it
        assert "untagged: busybox:latest" in r.stdout and "untagged: spare:1" in r.stdout, r.stdout
        assert "busybox" not in sdctr(host, "images").stdout
    finally:
        sdctr(host, "rm", "-f", up, kept, big, check=False)
        host.sh("sdctr images | grep -q '^busybox ' || sdctr import /tmp/bb.tar busybox")


# --- events -----------------------------------------------------------------------------------------

def test_events_from_the_journal(host: Machine) -> None:
    since = host.exec("date", "+%s").stdout.strip()
    cid = run_d(host, "--name", "eventful", "busybox", "sh", "-c",
                "until [ -e /go ]; do sleep 0.1; done; exit 3")
    sdctr(host, "pause", "eventful")
    sdctr(host, "unpause", "eventful")
    sdctr(host, "rename", "eventful", "renamed")
    host.exec("touch", "/tmp/go")
    sdctr(host, "cp", "/tmp/go", "renamed:/go")  # exec would go down with the container's PID 1
    assert sdctr(host, "wait", cid).stdout.strip() == "3"
    sdctr(host, "rm", "renamed")

    def actions(*flags: str) -> list[str]:
        out = sdctr(host, "events", "--since", since, "--until", "0s", "--filter", f"container={cid}",
                    *flags).stdout
        return out.splitlines()

    lines = wait_for(lambda: (x := actions()) and "destroy" in x[-1] and x, what="the destroy event")
    assert [line.split()[2] for line in lines] == [
        "create", "start", "pause", "unpause", "rename", "die", "destroy"], lines
    assert all(line.split()[3] == cid for line in lines)
    die = next(line for line in lines if line.split()[2] == "die")
    assert "exitCode=3" in die and "name=renamed" in die and "image=busybox:latest" in die, die
    assert "oldName=eventful" in next(line for line in lines if " rename " in line)
    docs = [json.loads(x) for x in actions("--format", "json", "--filter", "event=die")]
    assert [(d["Action"], d["Actor"]["Attributes"]["exitCode"]) for d in docs] == [("die", "3")]
    r = sdctr(host, "events", "--filter", "nope=1", check=False)
    assert r.returncode == 125 and "is not a filter" in r.stderr
