#!/usr/bin/python3
"""The generator of declared containers, timed as systemd runs it (at boot and at every
daemon-reload, target under 100 ms), against podman's quadlet where it is installed.

    bench/generator_bench.py [--containers N] [--runs R] [--instructions]

sdctr: N declared containers (the README's web example, each its own port) rendered by
units/system-generators/sdctr-generator, with the package copied into a scratch site directory
as a package installs it (no editable-install hook on the path), into a tmpfs as
/run/systemd/generator is; with its precompiled template (as shipped) and without it (jinja2
compiles the template, as before the skeleton). The floor: `python3 -c pass` on the same
interpreter. quadlet: the same N containers as .container files (Image, Exec, PublishPort,
Environment, PodmanArgs for the limits), `quadlet OUT` with QUADLET_UNIT_DIRS.

Wall time per run (median and min over R runs, alternating the tools so the shared machine's
drifting load falls on all); the children's user+system CPU. On a shared machine both drift
with the others' load: --instructions also counts each run's instructions under valgrind's
callgrind (one run each, slow, independent of the load). Nothing outside a temp directory
and /dev/shm is touched; both are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUADLETS = ("/usr/lib/systemd/system-generators/podman-system-generator", "/usr/libexec/podman/quadlet")

YAML = """image: nginx:latest
command: nginx -g "daemon off;"
memory: 256m
cpu_shares: 512
restart: always
network: bridge
ports: ["{port}:80"]
env: {{TZ: UTC}}
"""
CONTAINER = """[Container]
Image=nginx:latest
Exec=nginx -g "daemon off;"
PublishPort={port}:80
Environment=TZ=UTC
PodmanArgs=--memory 256m --cpu-shares 512

[Service]
Restart=always
"""


def timed(cmd: list[str], env: dict[str, str], out: Path) -> tuple[float, float]:
    """(wall, user+sys CPU) of one run into an empty `out`."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def count_instructions(cmd: list[str], env: dict[str, str], out: Path) -> int:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    run = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
                         env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return int(next(ln for ln in run.stderr.splitlines() if "Collected" in ln).split()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--instructions", action="store_true", help="count instructions (valgrind)")
    args = ap.parse_args()
    quadlet = next((q for q in QUADLETS if os.access(q, os.X_OK)), None)
    python = "/usr/bin/python3"
    with tempfile.TemporaryDirectory(prefix="sdctr-genbench-") as tmp, \
            tempfile.TemporaryDirectory(prefix="sdctr-genbench-", dir="/dev/shm") as shm:
        work, out = Path(tmp), Path(shm) / "out"
        declared, quadlet_dir = work / "containers", work / "quadlet"
        declared.mkdir()
        quadlet_dir.mkdir()
        for i in range(args.containers):
            (declared / f"web{i}.yaml").write_text(YAML.format(port=8000 + i))
            (quadlet_dir / f"web{i}.container").write_text(CONTAINER.format(port=8000 + i))
        # installed layouts: the package alone on the path, beside what it imports (PyYAML;
        # jinja2 for the no-skeleton run) from the interpreter this bench runs under
        sites = {}
        for label, keep_skeleton in (("sdctr", True), ("sdctr, jinja2 compiling", False)):
            site = work / label.split(",")[0].replace(" ", "") / ("with" if keep_skeleton else "without")
            shutil.copytree(REPO / "sdctr", site / "sdctr", ignore=shutil.ignore_patterns("__pycache__"))
            if not keep_skeleton:
                (site / "sdctr/systemd/compiled.py").unlink()
            subprocess.run([python, "-m", "compileall", "-q", str(site)], check=True)  # as a package does
            sites[label] = site
        deps = sysconfig.get_paths()["purelib"]
        generator = str(REPO / "units/system-generators/sdctr-generator")
        # the floor has the same path: a site hook's cost depends on it (this machine's imports certifi)
        runs: dict[str, tuple[list[str], dict[str, str]]] = {
            "python3 -c pass (floor)": ([python, "-s", "-c", "pass"],
                                        {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{sites['sdctr']}:{deps}"})}
        for label, site in sites.items():
            runs[label] = ([python, "-s", generator, str(out), str(out), str(out)],
                           {"PATH": "/usr/bin:/bin", "SDCTR_CONTAINERS_DIR": str(declared),
                            "PYTHONPATH": f"{site}:{deps}"})
        if quadlet:
            runs["quadlet"] = ([quadlet, "-no-kmsg-log", str(out), str(out), str(out)],
                               {"PATH": "/usr/bin:/bin", "QUADLET_UNIT_DIRS": str(quadlet_dir)})
        for label, (cmd, env) in runs.items():  # warm the page cache; check each makes its units
            timed(cmd, env, out)
            made = len(list(out.glob("*.service")))
            assert label.startswith("python3") or made == args.containers, (label, made)
        walls: dict[str, list[float]] = {k: [] for k in runs}
        cpus: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.runs):
            for label, (cmd, env) in runs.items():
                wall, cpu = timed(cmd, env, out)
                walls[label].append(wall)
                cpus[label].append(cpu)
        instructions = {label: count_instructions(cmd, env, out) for label, (cmd, env) in runs.items()} \
            if args.instructions else {}
    load = os.getloadavg()[0]
    print(f"{args.containers} declared containers, {args.runs} runs each, load average {load:.1f}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'':28} {'wall median':>12} {'wall min':>9} {'CPU median':>11}")
    for label in runs:
        print(f"{label:28} {statistics.median(walls[label]) * 1000:9.1f} ms "
              f"{min(walls[label]) * 1000:6.1f} ms {statistics.median(cpus[label]) * 1000:8.1f} ms")
    for label, count in instructions.items():
        print(f"{label:28} {count / 1e6:9.0f} M instructions")
    if quadlet:
        ratio = statistics.median(walls["sdctr"]) / statistics.median(walls["quadlet"])
        print(f"sdctr / quadlet (median wall): {ratio:.1f}x")
    else:
        version = subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout.strip() \
            if shutil.which("podman") else "no podman"
        print(f"quadlet: not installed ({version}; quadlet ships with podman 4.4 and later)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
