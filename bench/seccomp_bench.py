#!/usr/bin/python3
"""What the container's seccomp filter costs a syscall-heavy workload, in one run (as root).

    bench/seccomp_bench.py [--calls N] [--rounds R]

A static C loop (built with gcc) times N calls of each syscall below, in a child process that
runs it with: no filter; sdctr's filter (sdctr.init.seccomp.Filter, Docker's default profile
with the ENOSYS stub, libseccomp's binary tree); and the same rules as runc compiles Docker's
profile (libseccomp's default linear list), standing in for Docker. podman's default filter is
timed too when podman is on the machine. Rounds alternate the variants; the fastest round
(the least disturbed by a shared machine) and the median are reported, each as a ratio to no
filter.

getppid and stat are judged by number only, which Linux >= 5.11 caches per syscall (the filter
is then not run at all); personality(0xffffffff) is judged on its argument, so it runs the
whole program every call: the worst case, where the program's shape shows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from sdctr import linux  # noqa: E402
from sdctr.init import seccomp  # noqa: E402
from sdctr.spec import DEFAULT_CAPS  # noqa: E402

LOOP_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    long n = atol(argv[1]);
    struct stat st;
    double t0 = now();
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    double t1 = now();
    for (long i = 0; i < n; i++) stat("/", &st);
    double t2 = now();
    for (long i = 0; i < n; i++) syscall(SYS_personality, 0xffffffffL);
    double t3 = now();
    printf("%.1f %.1f %.1f\n", (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / n);
    return 0;
}
"""
SYSCALLS = ("getppid", "stat", "personality")


class RuncLikeFilter(seccomp.Filter):
    OPTIMIZE = 1  # libseccomp's default, which runc keeps


def build_loop(work: Path) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        sys.exit("seccomp_bench: needs gcc (Debian: gcc libc6-dev)")
    (work / "loop.c").write_text(LOOP_C)
    subprocess.run([gcc, "-O2", "-static", "-o", str(work / "loop"), str(work / "loop.c")], check=True)
    return work / "loop"


def run_filtered(loop: Path, calls: int, program: bytes | None) -> list[float]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.dup2(w, 1)
            if program is not None:
                linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
                linux.seccomp_set_filter(program)
            os.execv(loop, [str(loop), str(calls)])
        finally:
            os._exit(127)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the loop exited with {status}")
    return [float(x) for x in out.split()]


def run_podman(loop: Path, calls: int) -> list[float]:
    out = subprocess.run(["podman", "run", "--rm", "--network", "none", "-v", f"{loop}:/loop:ro",
                          "--rootfs", "/", "/loop", str(calls)],
                         capture_output=True, text=True, check=True).stdout
    return [float(x) for x in out.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    sdctr_filter = seccomp.Filter(DEFAULT_CAPS)
    runc_like = RuncLikeFilter(DEFAULT_CAPS)
    with tempfile.TemporaryDirectory() as tmp:
        loop = build_loop(Path(tmp))
        variants = {"none": lambda: run_filtered(loop, args.calls, None),
                    "sdctr": lambda: run_filtered(loop, args.calls, sdctr_filter.program),
                    "docker (runc-like)": lambda: run_filtered(loop, args.calls, runc_like.program)}
        if shutil.which("podman"):
            variants["podman"] = lambda: run_podman(loop, args.calls)
        results: dict[str, list[list[float]]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, run in variants.items():
                results[name].append(run())
    print(f"{args.rounds} rounds of {args.calls} calls; filters: sdctr "
          f"{len(sdctr_filter.program) // 8} instructions, runc-like {len(runc_like.program) // 8}")
    for label, pick in (("fastest round", min), ("median", statistics.median)):
        print(f"\nns per call, {label}\n{'':20}" + "".join(f"{s:>15}" for s in SYSCALLS))
        base = [pick(r[i] for r in results["none"]) for i in range(len(SYSCALLS))]
        for name, rounds in results.items():
            ns = [pick(r[i] for r in rounds) for i in range(len(SYSCALLS))]
            print(f"{name:20}" + "".join(f"{m:9.1f} x{m / b:4.2f}" for m, b in zip(ns, base)))
    if not shutil.which("podman"):
        print("(podman is not on this machine: its default filter was not timed)")


if __name__ == "__main__":
    main()
