#!/usr/bin/python3
"""sdctr against its peers on this machine, in one run, as ratios (run as root after bench/setup).

    bench/run_bench.py [--runs N] [--rounds R] [--containers N]

1. `run --rm --network none IMG true`, end to end, N times each, in rounds that alternate the
   tools (so that the machine's drifting load falls on both):
   sdctr (inside a test host, where systemd is PID 1), podman with runc (on this machine, with the
   cgroupfs manager and explicit ulimits, as this hybrid-cgroup host needs), systemd-nspawn (in
   the test host too: it needs systemd and D-Bus, which this machine's PID 1 is not).
2. With --containers N containers running `sleep`: the host memory each costs outside its
   workload (the PSS of every process in its unit that is not the workload), and how long the
   Nth start takes against the first.
Everything it makes (a test host, podman's store under a temp root) is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TESTHOST = REPO / "tests/testhost/testhost"
sys.path.insert(0, str(REPO / "tests"))  # the tests' helpers: the image the tests run
from helpers.rootfs import build_busybox_rootfs  # noqa: E402

# Runs inside the test host: times sdctr the way a user calls it, from the shell.
INSIDE = r'''
import json, subprocess, sys, time, os
mode, n = sys.argv[1], int(sys.argv[2])
def timed(cmd):
    t = time.perf_counter(); subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t
if mode == "run":
    subprocess.run(["sdctr", "run", "--rm", "--network", "none", "busybox", "true"], check=True)  # warm
    print(json.dumps([timed(["sdctr", "run", "--rm", "--network", "none", "busybox", "true"])
                      for _ in range(n)]))
elif mode == "nspawn":
    cmd = ["systemd-nspawn", "-q", "--register=no", "--private-network", "-D", "/root/rootfs", "/bin/true"]
    subprocess.run(cmd, check=True)
    print(json.dumps([timed(cmd) for _ in range(n)]))
elif mode == "many":
    starts, ids = [], []
    for i in range(n):
        t = time.perf_counter()
        ids.append(subprocess.run(["sdctr", "run", "-d", "busybox", "sleep", "100000"], check=True,
                                  capture_output=True, text=True).stdout.strip())
        starts.append(time.perf_counter() - t)
    overhead, workload = [], []
    for cid in ids:
        cg = "/sys/fs/cgroup/pids/sdctr.slice/ctr-%s.service/cgroup.procs" % cid[:12]
        extra = 0
        for pid in open(cg).read().split():
            comm = open("/proc/%s/comm" % pid).read().strip()
            pss = 0
            for line in open("/proc/%s/smaps_rollup" % pid):
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
            if comm == "sleep":
                workload.append(pss)
            else:
                extra += pss
        overhead.append(extra)
    waiters = subprocess.run(["pgrep", "-c", "-f", "sdctr init"], capture_output=True, text=True).stdout
    print(json.dumps({"starts": starts, "overhead": overhead, "workload": workload,
                      "sdctr_processes_left": int(waiters.strip() or 0)}))
    subprocess.run("sdctr ps -aq | xargs -r sdctr rm -f", shell=True, check=True,
                   stdout=subprocess.DEVNULL)
'''


def sh(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)  # type: ignore[call-overload, no-any-return]


def make_rootfs(d: Path) -> Path:
    root = build_busybox_rootfs(d / "rootfs")
    for sub in ("usr", "run"):
        (root / sub).mkdir()
    (root / "etc/os-release").write_text('ID=busybox\nNAME="busybox"\n')  # nspawn wants an OS tree
    tar = d / "busybox.tar"
    sh(["tar", "-C", str(root), "-cf", str(tar), "."])
    return tar


def timed_runs(cmd: list[str], n: int) -> list[float]:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # warm
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - t)
    return out


@contextlib.contextmanager
def test_host(tar: Path, work: Path) -> Iterator[str]:
    """A test host with sdctr, the busybox image and the inside script."""
    name = f"bench{os.getpid()}"
    sh([str(TESTHOST), "up", "--name", name])
    try:
        sh([str(TESTHOST), "cp", str(tar), f"{name}:/root/busybox.tar"])
        script = work / "inside.py"
        script.write_text(INSIDE)
        sh([str(TESTHOST), "cp", str(script), f"{name}:/root/inside.py"])
        sh([str(TESTHOST), "exec", name, "sdctr", "import", "/root/busybox.tar", "busybox"])
        yield name
    finally:
        subprocess.run([str(TESTHOST), "down", name], check=False)


def inside_script(name: str, work: Path, script: str, *args: str, timeout: float = 1800) -> str:
    """Another script's output, run inside the test host (bench/pairs.py's)."""
    path = work / "script.py"
    path.write_text(script)
    sh([str(TESTHOST), "cp", str(path), f"{name}:/root/script.py"])
    return sh([str(TESTHOST), "exec", name, "python3", "/root/script.py", *args], timeout=timeout).stdout


def inside(name: str, *args: str, timeout: float = 600) -> Any:
    return json.loads(sh([str(TESTHOST), "exec", name, "python3", "/root/inside.py", *args],
                         timeout=timeout).stdout)


@contextlib.contextmanager
def podman_run(tar: Path, work: Path) -> Iterator[list[str]]:
    """podman's `run --rm` command line, over a store of its own under `work`."""
    store = ["--root", str(work / "podman-root"), "--runroot", str(work / "podman-run"),
             "--cgroup-manager", "cgroupfs", "--runtime", "runc", "--events-backend", "none"]
    sh(["podman", *store, "import", str(tar), "busybox-bench"])
    try:
        yield ["podman", *store, "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
               "--ulimit", "nproc=4096:4096", "busybox-bench", "true"]
    finally:
        subprocess.run(["podman", *store, "system", "reset", "--force"], check=False,
                       capture_output=True)


def bench_nspawn(name: str, work: Path, runs: int) -> list[float] | str:
    """systemd-nspawn needs systemd and D-Bus, which this machine's PID 1 is not: it runs in the
    same test host as sdctr, from Debian's package of the test host's own systemd version."""
    try:
        sh(["apt-get", "download", "-q", "systemd-container"], cwd=work)
        deb = next(work.glob("systemd-container_*.deb"))
        sh([str(TESTHOST), "cp", str(deb), f"{name}:/root/systemd-container.deb"])
        # its other tools need libcurl, which the test host lacks; systemd-nspawn does not
        sh([str(TESTHOST), "exec", name, "dpkg", "-i", "--force-depends", "/root/systemd-container.deb"])
        sh([str(TESTHOST), "cp", str(work / "rootfs"), f"{name}:/root/rootfs"])
        return list(inside(name, "nspawn", str(runs)))
    except (subprocess.CalledProcessError, StopIteration) as e:
        return f"failed here: {getattr(e, 'stderr', '') or e}".strip().splitlines()[-1]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--rounds", type=int, default=4,
                   help="alternate sdctr and podman this many times (the machine's load drifts)")
    p.add_argument("--containers", type=int, default=100)
    args = p.parse_args()
    per_round = max(1, args.runs // args.rounds)
    runs = per_round * args.rounds  # for every tool alike
    sd_runs: list[float] = []
    pod_runs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sdctr-bench-") as tmp:
        work = Path(tmp)
        tar = make_rootfs(work)
        with test_host(tar, work) as name, podman_run(tar, work) as podman:
            for _ in range(args.rounds):
                sd_runs += inside(name, "run", str(per_round))
                pod_runs += timed_runs(podman, per_round)
            ns_runs = bench_nspawn(name, work, runs)
            many = inside(name, "many", str(args.containers), timeout=1800)
    med = statistics.median
    print(f"## run --rm --network none IMG true ({runs} runs, median)\n")
    print("| tool | median | ratio to podman |\n| --- | --- | --- |")
    print(f"| sdctr | {med(sd_runs) * 1000:.0f} ms | {med(sd_runs) / med(pod_runs):.2f} |")
    print(f"| podman --runtime runc | {med(pod_runs) * 1000:.0f} ms | 1.00 |")
    if isinstance(ns_runs, list):
        print(f"| systemd-nspawn (in the test host) | {med(ns_runs) * 1000:.0f} ms | "
              f"{med(ns_runs) / med(pod_runs):.2f} |")
    else:
        print(f"| systemd-nspawn | {ns_runs} | - |")
    starts, overhead = many["starts"], many["overhead"]
    print(f"\n## {args.containers} containers running `sleep`\n")
    print(f"- host memory per container outside the workload (PSS): median "
          f"{med(overhead) / 1024:.0f} KiB, max {max(overhead) / 1024:.0f} KiB "
          f"(the workload's own: {med(many['workload']) / 1024:.0f} KiB)")
    print(f"- sdctr processes left running beside the containers: {many['sdctr_processes_left']}")
    print(f"- start of container 1: {starts[0] * 1000:.0f} ms; container {len(starts)}: "
          f"{starts[-1] * 1000:.0f} ms; ratio {starts[-1] / starts[0]:.2f} "
          f"(median of the last ten over the first ten: "
          f"{med(starts[-10:]) / med(starts[:10]):.2f})")
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("run_bench.py needs root")
    sys.exit(main())
