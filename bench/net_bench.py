#!/usr/bin/python3
"""What the bridge network adds to a start, sdctr's against podman's, in one run (root, after
bench/setup).

    bench/net_bench.py [--pairs N]

`run --rm IMG true` with the bridge and with `--network none`, in turn (pairs: the machine's
drifting load falls on both), for sdctr inside a test host and for podman (runc, cgroupfs, a
store of its own) inside a network namespace made for the run, so that its bridge and NAT rules
never touch this machine's own interfaces. Prints the medians and what the bridge adds.
Everything it makes (the test host, the namespace, podman's store) is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run_bench import TESTHOST, make_rootfs, sh, test_host


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def pairs(bridge: list[str], none: list[str], n: int) -> tuple[list[float], list[float]]:
    timed(bridge)  # warm
    timed(none)
    a, b = [], []
    for _ in range(n):
        a.append(timed(bridge))
        b.append(timed(none))
    return a, b


def row(tool: str, a: list[float], b: list[float]) -> str:
    med = statistics.median
    ratios = statistics.median(x / y for x, y in zip(a, b))
    return (f"| {tool} | {med(a) * 1000:.0f} ms | {med(b) * 1000:.0f} ms | "
            f"+{(med(a) - med(b)) * 1000:.0f} ms | {ratios:.2f} |")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=20)
    args = p.parse_args()
    netns = f"sdctr-netbench{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="sdctr-netbench-") as tmp:
        work = Path(tmp)
        tar = make_rootfs(work)
        store = ["--root", str(work / "podman-root"), "--runroot", str(work / "podman-run"),
                 "--cgroup-manager", "cgroupfs", "--runtime", "runc", "--events-backend", "none"]
        sh(["ip", "netns", "add", netns])
        try:
            sh(["ip", "-n", netns, "link", "set", "lo", "up"])
            # nsenter, not `ip netns exec`: that remounts /sys, and runc needs the cgroup mounts
            podman = ["nsenter", f"--net=/run/netns/{netns}", "podman", *store]
            sh([*podman, "import", str(tar), "busybox-bench"])
            run = [*podman, "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
            with test_host(tar, work) as name:
                sdctr = [str(TESTHOST), "exec", name, "sdctr", "run", "--rm"]
                sd = pairs([*sdctr, "busybox", "true"], [*sdctr, "--network", "none", "busybox", "true"],
                           args.pairs)
                pod = pairs([*run, "--network", "bridge", "busybox-bench", "true"],
                            [*run, "--network", "none", "busybox-bench", "true"], args.pairs)
            subprocess.run([*podman, "system", "reset", "--force"], check=False, capture_output=True)
        finally:
            subprocess.run(["ip", "netns", "del", netns], check=False)
    print(f"## run --rm IMG true: bridge against --network none ({args.pairs} pairs, medians)\n")
    print("| tool | bridge | none | added | bridge / none |\n| --- | --- | --- | --- | --- |")
    print(row("sdctr (in a test host, through `testhost exec`)", *sd))
    print(row("podman --runtime runc (in a network namespace)", *pod))
    added = (statistics.median(sd[0]) - statistics.median(sd[1])) / \
        (statistics.median(pod[0]) - statistics.median(pod[1]))
    print(f"\nsdctr's addition is {added:.2f}x podman's")
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench/net_bench.py needs root (a test host, a network namespace, podman)")
    sys.exit(main())
