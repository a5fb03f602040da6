#!/usr/bin/python3
"""What the bridge network adds to a start, sdctr's against podman's, in one run (root, after
bench/setup).

    bench/net_bench.py [--pairs N]
    bench/net_bench.py --throughput [--size-mb MB] [--downloads N]

`run --rm IMG true` with the bridge and with `--network none`, in turn (pairs: the machine's
drifting load falls on both), for sdctr inside a test host and for podman (runc, cgroupfs, a
store of its own) inside a network namespace made for the run, so that its bridge and NAT rules
never touch this machine's own interfaces. Prints the medians and what the bridge adds.

--throughput: a large download through a published port instead: busybox httpd in a container
(`-p 8080:80`) serves a sparse file of MB megabytes (no disk in the way), fetched once to warm up,
then N times in turn by the same Python client through 127.0.0.1:8080 (the DNAT in OUTPUT, route_localnet, the
masquerade), for sdctr in its test host and podman in its namespace; the median rates.
Everything it makes (the test host, the namespace, podman's store) is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from run_bench import TESTHOST, make_rootfs, sh, test_host


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def in_turn(first: Callable[[], float], second: Callable[[], float],
            n: int) -> tuple[list[float], list[float]]:
    """Each measured once to warm up (each tool's first download ran at a fifth of the rest), then
    n times in turn: the machine's drifting load falls on both."""
    first()
    second()
    a, b = [], []
    for _ in range(n):
        a.append(first())
        b.append(second())
    return a, b


def pairs(bridge: list[str], none: list[str], n: int) -> tuple[list[float], list[float]]:
    return in_turn(lambda: timed(bridge), lambda: timed(none), n)


@contextlib.contextmanager
def podman_in_netns(work: Path, tar: Path) -> Iterator[list[str]]:
    """podman (runc, cgroupfs, a store of its own in `work`) inside a network namespace made for
    the run, the busybox image imported; its argv. The namespace and the store go at the end."""
    netns = f"sdctr-netbench{os.getpid()}"
    store = ["--root", str(work / "podman-root"), "--runroot", str(work / "podman-run"),
             "--cgroup-manager", "cgroupfs", "--runtime", "runc", "--events-backend", "none"]
    sh(["ip", "netns", "add", netns])
    try:
        sh(["ip", "-n", netns, "link", "set", "lo", "up"])
        # nsenter, not `ip netns exec`: that remounts /sys, and runc needs the cgroup mounts
        podman = ["nsenter", f"--net=/run/netns/{netns}", "podman", *store]
        sh([*podman, "import", str(tar), "busybox-bench"])
        yield podman
        subprocess.run([*podman, "system", "reset", "--force"], check=False, capture_output=True)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


# the client, in the test host and in podman's namespace alike: the body read into one buffer
DOWNLOAD = r'''
import sys, time, urllib.request
url = sys.argv[1]
for _ in range(300):  # the server answers once the container is up
    try:
        urllib.request.urlopen(url + "small", timeout=2).read()
        break
    except OSError:
        time.sleep(0.1)
buf = memoryview(bytearray(1 << 20))
t = time.perf_counter()
n = 0
with urllib.request.urlopen(url + "big", timeout=60) as r:
    while True:
        got = r.readinto(buf)
        if not got:
            break
        n += got
print(n, time.perf_counter() - t)
'''
SERVE = ["httpd", "-f", "-p", "80", "-h", "/www"]


def download(cmd: list[str], size: int) -> float:
    """One download's rate, MB/s, as the client timed it."""
    got, seconds = sh(cmd, timeout=600).stdout.split()
    if int(got) != size:
        raise SystemExit(f"{cmd}: {got} bytes of {size}")
    return size / float(seconds) / 1e6


def throughput(args: argparse.Namespace) -> int:
    size = args.size_mb * 1000 * 1000
    with tempfile.TemporaryDirectory(prefix="sdctr-netbench-") as tmp:
        work = Path(tmp)
        tar = make_rootfs(work)
        www = work / "www"
        www.mkdir()
        (www / "small").write_text("ok\n")
        with open(www / "big", "wb") as f:
            f.truncate(size)
        (work / "download.py").write_text(DOWNLOAD)
        with podman_in_netns(work, tar) as podman:
            sh([*podman, "run", "-d", "--name", "web", "--ulimit", "nofile=1024:1024", "--ulimit",
                "nproc=4096:4096", "-p", "8080:80", "-v", f"{www}:/www:ro", "busybox-bench", *SERVE])
            pod_get = ["nsenter", podman[1], sys.executable, str(work / "download.py"),
                       "http://127.0.0.1:8080/"]
            with test_host(tar, work) as name:
                exec_ = [str(TESTHOST), "exec", name]
                sh([str(TESTHOST), "cp", str(work / "download.py"), f"{name}:/root/download.py"])
                sh([*exec_, "sh", "-c", f"mkdir -p /www; echo ok >/www/small; truncate -s {size} /www/big"])
                sh([*exec_, "sdctr", "run", "-d", "--name", "web", "-p", "8080:80", "-v", "/www:/www:ro",
                    "busybox", *SERVE])
                sd_get = [*exec_, "python3", "/root/download.py", "http://127.0.0.1:8080/"]
                sd, pod = in_turn(lambda: download(sd_get, size), lambda: download(pod_get, size),
                                  args.downloads)
                sh([*exec_, "sdctr", "rm", "-f", "web"])
            subprocess.run([*podman, "rm", "-f", "web"], check=False, capture_output=True)
    med = statistics.median
    print(f"## {args.size_mb} MB through -p 8080:80 from 127.0.0.1 ({args.downloads} downloads each, "
          "medians)\n")
    print("| tool | MB/s | runs (MB/s) |\n| --- | --- | --- |")
    print(f"| sdctr (in a test host; nft DNAT) | {med(sd):.0f} | {', '.join(f'{x:.0f}' for x in sd)} |")
    print(f"| podman --runtime runc (in a network namespace) | {med(pod):.0f} | "
          f"{', '.join(f'{x:.0f}' for x in pod)} |")
    print(f"\nsdctr's rate is {med(sd) / med(pod):.2f}x podman's")
    return 0


def row(tool: str, a: list[float], b: list[float]) -> str:
    med = statistics.median
    ratios = statistics.median(x / y for x, y in zip(a, b))
    return (f"| {tool} | {med(a) * 1000:.0f} ms | {med(b) * 1000:.0f} ms | "
            f"+{(med(a) - med(b)) * 1000:.0f} ms | {ratios:.2f} |")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=20)
    p.add_argument("--throughput", action="store_true", help="a large download through -p instead")
    p.add_argument("--size-mb", type=int, default=1000)
    p.add_argument("--downloads", type=int, default=5)
    args = p.parse_args()
    if args.throughput:
        return throughput(args)
    with tempfile.TemporaryDirectory(prefix="sdctr-netbench-") as tmp:
        work = Path(tmp)
        tar = make_rootfs(work)
        with podman_in_netns(work, tar) as podman:
            run = [*podman, "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
            with test_host(tar, work) as name:
                sdctr = [str(TESTHOST), "exec", name, "sdctr", "run", "--rm"]
                sd = pairs([*sdctr, "busybox", "true"], [*sdctr, "--network", "none", "busybox", "true"],
                           args.pairs)
                pod = pairs([*run, "--network", "bridge", "busybox-bench", "true"],
                            [*run, "--network", "none", "busybox-bench", "true"], args.pairs)
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
