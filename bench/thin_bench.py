#!/usr/bin/python3
"""Time to a container's root file system, devicemapper against overlay and a plain copy, from a
10 MB and a 1 GB image, in the VM tier's guest (a real kernel with dm-thin; root; one run).

    bench/thin_bench.py [--cgroup v1|v2]

Boots tests/vm/vm with bench/thin-rootfs.sh (which says what is measured), and prints its lines
and a table of medians in ms. The guest's CPU is emulated (TCG): compare the drivers with each
other, not with numbers from a real machine. Set SDCTR_TEST_CACHE as the VM tier does.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cgroup", choices=["v1", "v2"], default="v2")
    args = p.parse_args()
    r = subprocess.run([str(REPO / "tests/vm/vm"), "run", "--cgroup", args.cgroup, "--timeout", "3000",
                        str(REPO / "bench/thin-rootfs.sh")], capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        return r.returncode
    rows: dict[tuple[str, str], float] = {}
    for line in r.stdout.splitlines():
        if line.startswith("BENCH "):
            _, name, size, *times = line.split()
            rows[name, size] = statistics.median(float(t) for t in times)
    print("\n| rootfs ready (median of 3, ms) | 10 MB image | 1 GB image | 1 GB / 10 MB |")
    print("| --- | --- | --- | --- |")
    for name in ("devicemapper", "overlay", "copy"):
        small, big = rows.get((name, "10")), rows.get((name, "1024"))
        if small and big:
            print(f"| {name} | {small:.0f} | {big:.0f} | {big / small:.2f}x |")
    thin, over = rows.get(("run-rm-devicemapper", "10")), rows.get(("run-rm-overlay", "10"))
    if thin and over:
        print(f"\n`run --rm IMG true`: devicemapper {thin:.0f} ms, overlay {over:.0f} ms "
              f"({thin / over:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
