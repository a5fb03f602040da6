#!/usr/bin/python3
"""Where the time of `sdctr run --rm IMG true` goes, devicemapper against overlay, in the VM
tier's guest (a real kernel with dm-thin; systemd as PID 1; one boot).

    bench/thin_run_trace.py [--cgroup v1|v2] [--runs N] [--network none|bridge] [--raw]
    bench/thin_run_trace.py --before REV [--cgroup v1|v2] [--runs N] [--network none|bridge]

Boots tests/vm/vm with bench/thin-run-trace.sh (which says what it does) and prints the medians
of the runs (the drivers alternate), the pieces measured alone, and one traced run of each as a
timeline: seconds since the run began, per step of both units (`--raw`: every journal line the
payload kept, and a cProfile of the CLI in each). The guest's CPU is emulated (TCG) and the
machine shared: compare the drivers with each other within one boot. Set SDCTR_TEST_CACHE as
the VM tier does. `--before REV`: the runs alone, this checkout's against git revision REV's
sdctr package, alternating in one boot.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the journal lines that mark a step: systemd's (a unit's commands and states) and sh -x's
STEPS = re.compile(r"About to execute (\S+(?: \S+)?)|Control process exited|Main process exited|"
                   r"New main PID|Finished |Started |Stopping |Stopped |Deactivated successfully|"
                   r"container create|Accepted new private connection|CLI (start|end)|"
                   r"sh\[\d+\]: \+ (dmsetup|mount|umount|sync|mv|rm|flock|mountpoint)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cgroup", choices=["v1", "v2"], default="v2")
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--network", default="none")
    p.add_argument("--raw", action="store_true")
    p.add_argument("--before", metavar="REV")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as before:
        share, extra = [], []
        if args.before:
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.before, "sdctr"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", before], input=archive, check=True)
            share, extra = ["--share", f"{before}:/mnt/before"], ["/mnt/before/sdctr"]
        r = subprocess.run([str(REPO / "tests/vm/vm"), "run", "--cgroup", args.cgroup, "--timeout", "2400",
                            *share, str(REPO / "bench/thin-run-trace.sh"), str(args.runs), args.network,
                            *extra], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        return r.returncode
    failed = [line for line in r.stdout.splitlines() if line.startswith("FAILED ")]
    for line in failed:
        print(line, "(a `sdctr run` failed: its time is not what it should be)")
    print_ratios(r.stdout)
    for line in r.stdout.splitlines():
        if line.startswith("PIECE ") or (args.raw and line.startswith("PROFILE ")):
            print(line)
    for driver in ("devicemapper", "overlay"):
        print(f"\n{driver}, one traced run (systemd at debug level: slower than the runs above)")
        lines = [line.split(" ", 3)[2:] for line in r.stdout.splitlines()
                 if line.startswith(f"TRACE {driver} ")]
        steps = sorted((float(at), text) for at, text in lines if args.raw or STEPS.search(text))
        for at, text in steps:
            print(f"  {at - steps[0][0]:7.2f}  {text[:150]}")
    return 1 if failed else 0


def print_ratios(out: str) -> None:
    """The runs' medians per driver, and the ratios: of the medians, and of the back-to-back runs."""
    times: dict[str, list[int]] = {}
    for line in out.splitlines():
        if line.startswith("TIMES "):
            _, driver, took = line.split()
            times.setdefault(driver, []).append(int(took))
    for driver, runs in times.items():
        print(f"{driver}: {' '.join(map(str, runs))} ms, median {statistics.median(runs):.0f}")
    batches = dict(line.split()[1:] for line in out.splitlines() if line.startswith("BATCH "))
    for suffix in ("", "-before", "-after"):
        thin, over = (statistics.median(times.get(d + suffix) or [0]) for d in ("devicemapper", "overlay"))
        if thin and over:
            print(f"`run --rm` devicemapper / overlay{suffix}: {thin / over:.2f}x")
        thin, over = (int(batches.get(d + suffix, 0)) for d in ("devicemapper", "overlay"))
        if thin and over:
            print(f"  5 back to back{suffix}: devicemapper {thin} / overlay {over} ms = {thin / over:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
