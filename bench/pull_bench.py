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
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tests' helpers: the same registry as the registry tests
from helpers.layout import Layout, Variant, tar_files  # noqa: E402
from helpers.registries import InNetns, push, serve_registry, throwaway_netns  # noqa: E402

PORT = 5000
REGISTRY = f"127.0.0.1:{PORT}"
# Runs one command and prints its peak RSS (KiB, children included) on stderr's last line.
PEAK = ("import resource, subprocess, sys\n"
        "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(rc)\n")


def random_layer(mb: int, seed: int) -> bytes:
    """An uncompressed tar of one file of random bytes."""
    return tar_files({f"data/layer-{seed}.bin": os.urandom(mb << 20)})


def make_image(layout: Layout, tag: str, layers: int, mb: int) -> None:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    tars = tuple(random_layer(mb, i) for i in range(layers))
    layout.add(tag, [Variant(arch, ("PATH=/bin",), ("/bin/true",), tars)])


def timed_pull(netns: InNetns, cmd: list[str], fresh: list[Path]) -> tuple[float, int]:
    """(seconds, peak RSS in bytes) of one pull into empty stores."""
    for d in fresh:
        shutil.rmtree(d, ignore_errors=True)
    t = time.perf_counter()
    r = subprocess.run([*netns.enter, sys.executable, "-c", PEAK, *cmd], capture_output=True, text=True)
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
    with contextlib.ExitStack() as stack:  # unwound in reverse: registry, namespace, files
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sdctr-pullbench-")))
        netns = stack.enter_context(throwaway_netns("sdctr-pullbench"))
        stack.enter_context(serve_registry(netns, work, PORT))
        print(f"making the image: {args.layers} layers of {args.layer_mb} MB, and one with "
              f"{args.layers * 10} layers of {max(1, args.layer_mb // 10)} MB ...", file=sys.stderr)
        layout = Layout(work / "layout")
        make_image(layout, "big", args.layers, args.layer_mb)
        make_image(layout, "small-layers", args.layers * 10, max(1, args.layer_mb // 10))
        for tag in ("big", "small-layers"):
            push(netns, layout.root, tag, f"{REGISTRY}/bench/image:{tag}")
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
