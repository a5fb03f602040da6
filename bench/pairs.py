#!/usr/bin/python3
"""What one feature costs a start, in pairs: `run --rm --network none IMG true` with and without it,
alternating run by run inside one test host, so that the machine's drifting load falls on both
(run as root).

    bench/pairs.py [--pairs N]

The features, each taken away without changing the code:
- accounting: the unit's CPUAccounting= and IO accounting (`stats`' columns), off by --property
  (on a cgroup v1 host each is one more hierarchy the unit's cgroup is made and attached in);
- machined: the init's registration (busctl RegisterMachine), off by moving systemd-machined's
  binary aside for the run, which the init takes as "not installed".
Prints each feature's median start with and without, and the median of the pairs' differences
(the number to quote: a busy machine moves the medians by more than the features cost).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from run_bench import inside_script, make_rootfs, test_host  # (bench/ is the script's directory)

PAIRS = r'''
import json, os, statistics, subprocess, sys, time
MACHINED = "/usr/lib/systemd/systemd-machined"
RUN = ["sdctr", "run", "--rm", "--network", "none"]
v1 = not os.path.exists("/sys/fs/cgroup/cgroup.controllers")
NO_ACCOUNTING = ["--property", "CPUAccounting=no",
                 "--property", "BlockIOAccounting=no" if v1 else "IOAccounting=no"]
def timed(cmd):
    t = time.perf_counter(); subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t
def without_machined(cmd):
    os.rename(MACHINED, MACHINED + ".off")
    try:
        return timed(cmd)
    finally:
        os.rename(MACHINED + ".off", MACHINED)
features = {
    "accounting": (lambda: timed(RUN + ["busybox", "true"]),
                   lambda: timed(RUN + NO_ACCOUNTING + ["busybox", "true"])),
    "machined": (lambda: timed(RUN + ["busybox", "true"]),
                 lambda: without_machined(RUN + ["busybox", "true"])),
}
timed(RUN + ["busybox", "true"])  # warm
out = {}
for name, (with_it, without) in features.items():
    pairs = []
    for i in range(int(sys.argv[1])):
        if i % 2:
            b = without(); a = with_it()
        else:
            a = with_it(); b = without()
        pairs.append((a, b))
    med = statistics.median
    out[name] = {"with": med(a for a, _ in pairs), "without": med(b for _, b in pairs),
                 "difference": med(a - b for a, b in pairs)}
print(json.dumps(out))
'''


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=40)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="sdctr-bench-") as tmp:
        work = Path(tmp)
        tar = make_rootfs(work)
        with test_host(tar, work) as name:
            result = json.loads(inside_script(name, work, PAIRS, str(args.pairs)))
    load = os.getloadavg()[0]
    print(f"## what a feature costs `run --rm --network none IMG true` "
          f"({args.pairs} pairs, load {load:.1f})\n")
    print("| feature | with | without | median difference of the pairs |\n| --- | --- | --- | --- |")
    for feature, r in result.items():
        print(f"| {feature} | {r['with'] * 1000:.0f} ms | {r['without'] * 1000:.0f} ms | "
              f"{r['difference'] * 1000:+.1f} ms |")
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench/pairs.py needs root (a test host)")
    sys.exit(main())
