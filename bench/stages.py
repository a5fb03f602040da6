#!/usr/bin/python3
"""Where the time of one `sdctr run --rm --network none IMG true` goes (root, after bench/setup).

    bench/stages.py [--runs N]

Runs it N times in a test host while perf records the kernel's own events for every process on
the machine: exec, exit and fork (sched:sched_process_*), and connect(2) (the CLI's first one is
its D-Bus connection). The stages between those events, median over the runs, are what the
README's table shows. Nothing is added to the programs measured. tracefs is mounted for perf if
it is not, and unmounted again; the test host is removed.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from run_bench import TESTHOST, make_rootfs, test_host

TRACEFS = Path("/sys/kernel/tracing")
EVENTS = ("sched:sched_process_exec", "sched:sched_process_exit", "sched:sched_process_fork",
          "syscalls:sys_enter_connect")
# (stage's end, what happened since the previous one)
STAGES = (
    ("connect", "the CLI: interpreter, imports, parsing, the image, up to its D-Bus connection"),
    ("fork_pre", "the record and snapshot, StartTransientUnit, until systemd forks ExecStartPre"),
    ("pre_exec", "systemd's child, until it execs ExecStartPre (cgroup attaches)"),
    ("init_exec", "ExecStartPre (sh, mountpoint, mount) and systemd's spawn of the init"),
    ("tini_exec", "the init: interpreter, imports, namespaces, mounts, READY, until the reaper runs"),
    ("cmd_exit", "the command (true) under the reaper"),
    ("stop_exec", "systemd sees the end and spawns ExecStop"),
    ("post_exec", "ExecStop (stop.sh: no main process left) and the spawn of ExecStopPost"),
    ("post_exit", "ExecStopPost (poststop.sh: umount, rm, the exit file)"),
    ("cli_exit", "the CLI sees the exit file and exits"),
)


def record(name: str, runs: int, data: Path) -> None:
    perf = subprocess.Popen(["perf", "record", "-q", "-a", "-o", str(data),
                             *(a for e in EVENTS for a in ("-e", e))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)  # perf is ready
        loop = (f"for i in $(seq {runs}); do sdctr run --rm --network none busybox true; "
                "sleep 0.2; done")
        subprocess.run([str(TESTHOST), "exec", name, "--", "sh", "-c", loop], check=True,
                       stdout=subprocess.DEVNULL)
    finally:
        perf.send_signal(2)
        perf.wait()


def events(data: Path) -> Iterator[tuple[float, str, str, int]]:
    """(ms, kind, program, pid), in time order."""
    out = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,pid,time,event,trace"],
                         capture_output=True, text=True, check=True).stdout
    line_re = re.compile(r"\s*(\S+)\s+(\d+)\s+([\d.]+):\s+(?:sched:sched_process_|syscalls:sys_enter_)"
                         r"(exec|exit|fork|connect):?\s+(.*)")
    for line in out.splitlines():
        m = line_re.match(line)
        if m:
            comm, pid, t, kind, rest = m.groups()
            exe = re.search(r"filename=(\S+)", rest)
            yield float(t) * 1000, kind, os.path.basename(exe.group(1)) if exe else comm, int(pid)


def runs_of(data: Path) -> list[dict[str, float]]:  # noqa: PLR0912 - one branch per event
    """Each run's stage ends, from the events: the first `sdctr` exec is the CLI, the second
    the init; `sh` execs are ExecStartPre, ExecStop, ExecStopPost in that order."""
    runs: list[dict[str, float]] = []
    cur: dict[str, float] = {}
    pids: dict[str, int] = {}
    for t, kind, prog, pid in events(data):
        if kind == "exec" and prog == "sdctr" and (not cur or "cli_exit" in cur):
            cur, pids = {"cli": t}, {"cli": pid}
            runs.append(cur)
            continue
        if not cur:
            continue
        if kind == "connect" and pid == pids["cli"]:
            cur.setdefault("connect", t)
        elif kind == "fork" and prog == "systemd" and "connect" in cur and "pre_exec" not in cur:
            cur.setdefault("fork_pre", t)
        elif kind == "exec" and prog == "sh" and "pre_exec" not in cur:
            cur["pre_exec"] = t
        elif kind == "exec" and prog == "sdctr" and "init_exec" not in cur:
            cur["init_exec"], pids["init"] = t, pid
        elif kind == "exec" and "init_exec" in cur and "tini_exec" not in cur and prog != "sh":
            cur["tini_exec"] = t  # the reaper, exec'd through a descriptor
        elif kind == "exit" and prog == "true":
            cur.setdefault("cmd_exit", t)
        elif kind == "exec" and prog == "sh" and "cmd_exit" in cur and "stop_exec" not in cur:
            cur["stop_exec"] = t
        elif kind == "exec" and prog == "sh" and "stop_exec" in cur and "post_exec" not in cur:
            cur["post_exec"], pids["post"] = t, pid
        elif kind == "exit" and pid == pids.get("post"):
            cur.setdefault("post_exit", t)
        elif kind == "exit" and pid == pids["cli"]:
            cur["cli_exit"] = t
    return [r for r in runs if all(stage in r for stage, _ in STAGES)]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=30)
    args = p.parse_args()
    mounted = not os.path.ismount(TRACEFS)
    if mounted:
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=True)
    try:
        with tempfile.TemporaryDirectory(prefix="sdctr-stages-") as tmp:
            work = Path(tmp)
            with test_host(make_rootfs(work), work) as name:
                record(name, args.runs, work / "perf.data")
            runs = runs_of(work / "perf.data")
    finally:
        if mounted:
            subprocess.run(["umount", str(TRACEFS)], check=False)
    if not runs:
        sys.exit("no complete run in perf's record")
    print(f"## one `run --rm --network none IMG true`, stage by stage ({len(runs)} runs, median)\n")
    print("| stage | ms |\n| --- | --- |")
    previous = "cli"
    for stage, what in STAGES:
        print(f"| {what} | {statistics.median(r[stage] - r[previous] for r in runs):.0f} |")
        previous = stage
    print(f"| **total** | **{statistics.median(r['cli_exit'] - r['cli'] for r in runs):.0f}** |")
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("stages.py needs root")
    sys.exit(main())
