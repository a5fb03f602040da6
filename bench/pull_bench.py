#!/usr/bin/python3
"""`sdctr pull` against `skopeo copy` and `podman pull`, on this machine, in one run (as root,
after bench/setup).

    bench/pull_bench.py [--runs N] [--layers N] [--layer-mb MB]

A docker-registry (Debian's reference implementation) serves, on 127.0.0.1:5000 inside a network
namespace made for the run, an image of --layers gzipped layers of --layer-mb MB each (random
bytes, so about as large compressed: the default is 5 x 40 MB = 200 MB over the wire), pushed by
skopeo. Each tool pulls it --runs times into an empty store:

- sdctr pull: downloads the blobs (3 at a time) and verifies each digest; the layers meet the
  tar-safety rules when the first container unpacks them;
- skopeo copy docker://… oci:DIR: downloads and verifies the blobs, nothing more;
- podman pull: downloads, verifies and unpacks every layer into its overlay store.

Peak memory is each tool's maximum resident set (its children included); sdctr's is also shown
for the same image with 10x smaller layers: streaming keeps it independent of layer size.
Everything made (namespace, registry, stores) is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests/host"))
from registry_helpers import REGISTRY_CONFIG, Layout, Variant  # noqa: E402 - the tests' helpers

REGISTRY = "127.0.0.1:5000"
# Runs one command and prints its peak RSS (KiB, children included) on stderr's last line.
PEAK = ("import resource, subprocess, sys\n"
        "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(rc)\n")


def sh(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, text=True, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return r


def random_layer(mb: int, seed: int) -> bytes:
    """An uncompressed tar of one file of random bytes."""
    import io
    import tarfile

    data = os.urandom(mb << 20)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"data/layer-{seed}.bin")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_image(layout: Layout, tag: str, layers: int, mb: int) -> None:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    tars = tuple(random_layer(mb, i) for i in range(layers))
    layout.add(tag, [Variant(arch, ("PATH=/bin",), ("/bin/true",), tars)])


def timed_pull(netns: str, cmd: list[str], fresh: list[Path]) -> tuple[float, int]:
    """(seconds, peak RSS in bytes) of one pull into empty stores."""
    for d in fresh:
        shutil.rmtree(d, ignore_errors=True)
    t = time.perf_counter()
    r = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", PEAK, *cmd],
                       capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {r.stderr.strip()}")
    return elapsed, int(r.stderr.strip().splitlines()[-1]) * 1024


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--layer-mb", type=int, default=40)
    args = p.parse_args()
    netns = f"sdctr-pullbench-{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="sdctr-pullbench-"))
    registry = None
    sh(["ip", "netns", "add", netns])
    try:
        sh(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"])
        (work / "storage").mkdir()
        (work / "config.yml").write_text(REGISTRY_CONFIG.format(storage=work / "storage", port=5000, auth=""))
        registry = subprocess.Popen(["ip", "netns", "exec", netns, "docker-registry", "serve",
                                     str(work / "config.yml")], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        probe = "import socket; socket.create_connection(('127.0.0.1', 5000), 0.5).close()"
        for _ in range(100):
            if subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", probe],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        print(f"making the image: {args.layers} layers of {args.layer_mb} MB, and one with "
              f"{args.layers * 10} layers of {max(1, args.layer_mb // 10)} MB ...", file=sys.stderr)
        layout = Layout(work / "layout")
        make_image(layout, "big", args.layers, args.layer_mb)
        make_image(layout, "small-layers", args.layers * 10, max(1, args.layer_mb // 10))
        for tag in ("big", "small-layers"):
            sh(["ip", "netns", "exec", netns, "skopeo", "--insecure-policy", "copy",
                "--dest-tls-verify=false", f"oci:{work / 'layout'}:{tag}", f"docker://{REGISTRY}/bench/image:{tag}"])
        ref = f"{REGISTRY}/bench/image:big"
        sdctr = [str(REPO / ".venv/bin/sdctr"), "--root", str(work / "sdctr"), "pull", "-q"]
        podman = ["podman", "--root", str(work / "podman-root"), "--runroot", str(work / "podman-run"),
                  "--storage-driver", "overlay", "--events-backend", "none", "pull", "--quiet",
                  "--tls-verify=false"]
        tools = {
            "sdctr pull": ([*sdctr, ref], [work / "sdctr"]),
            "skopeo copy (to an OCI dir)": (["skopeo", "--insecure-policy", "copy", "--quiet",
                                             "--src-tls-verify=false", f"docker://{ref}",
                                             f"oci:{work / 'skopeo'}:big"], [work / "skopeo"]),
            "podman pull": ([*podman, ref], [work / "podman-root", work / "podman-run"]),
        }
        results: dict[str, list[tuple[float, int]]] = {name: [] for name in tools}
        for _ in range(args.runs):  # interleaved, so a busy moment hits every tool alike
            for name, (cmd, stores) in tools.items():
                results[name].append(timed_pull(netns, cmd, stores))
        small = timed_pull(netns, [*sdctr, f"{REGISTRY}/bench/image:small-layers"], [work / "sdctr"])
        subprocess.run(["podman", "--root", str(work / "podman-root"), "--runroot", str(work / "podman-run"),
                        "system", "reset", "--force"], capture_output=True, check=False)
    finally:
        if registry:
            registry.terminate()
            registry.wait()
        subprocess.run(["ip", "netns", "del", netns], check=False)
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    best_peer = min(med([t for t, _ in results[n]]) for n in results if n != "sdctr pull")
    total = args.layers * args.layer_mb
    print(f"## pull of a {total} MB image ({args.layers} layers), {args.runs} runs, median\n")
    print("| tool | median | peak RSS | ratio to the faster peer |\n| --- | --- | --- | --- |")
    for name, runs in results.items():
        t, rss = med([t for t, _ in runs]), max(r for _, r in runs)
        print(f"| {name} | {t:.2f} s | {rss >> 20} MiB | {t / best_peer:.2f} |")
    print(f"\nsdctr's peak RSS with {args.layers * 10} layers of {max(1, args.layer_mb // 10)} MB: "
          f"{small[1] >> 20} MiB (against {max(r for _, r in results['sdctr pull']) >> 20} MiB with "
          f"{args.layer_mb} MB layers)")
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("pull_bench.py needs root")
    sys.exit(main())
