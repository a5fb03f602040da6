#!/usr/bin/python3
"""A Docker user's day, typed into podman and into sdctr: exit codes and outputs compared (issue 14).

    bench/differential.py [--out FILE] [--record] [--host TESTHOST]   (as root, after bench/setup)

The same 68 commands (DAY, in order: each leaves the state the next one expects) run against
podman on this machine, as bench/run_bench.py runs it (runc, the cgroupfs manager, a store of its
own under a temporary directory, explicit ulimits: here in a containers.conf of its own, so the
commands are the same words), and against sdctr in a fresh test host (systemd as PID 1). Both
get the same image: the tiers' busybox root file system, imported as `bb`. podman runs in a
network namespace made for it (`nsenter --net`: CNI's bridge and rules stay in there) with a CNI
configuration directory of its own (CNI's leases come and go in /var/lib/cni, as any podman
run's); everything it made goes with `podman system reset` and the namespace.

Outputs are compared after `normalise` (ids, times, sizes, the tool's own name, column widths);
a row compared by "status" compares the exit status and which of stdout and stderr said
something, where the two tools' wording is their own; "streams" compares stderr too. Each row's verdict:
agree; differs on purpose (DAY says why); or differs, unexplained: a bug. The Markdown table goes
to stdout (or --out); --record also writes both tools' results to differential.json beside this
script: tests/testhost/test_differential.py plays sdctr's half again and asserts that every row
shows what the file holds, so a regression (or a fix) flips a row until the table is made again.

`python3 differential.py play TOOL... -- WORKDIR` (used inside the test host, stdlib only) plays
the day with the command TOOL... and prints the raw results as JSON.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EXPECTED = HERE / "differential.json"


class Step(NamedTuple):
    key: str                # the row's name, unique
    args: str               # after the tool's name; {work} is a scratch directory of the run
    compare: str = "output"  # "output": status and stdout; "streams": and stderr; "status": status
    #                          (and which of stdout and stderr said something)
    purpose: str = ""       # why sdctr differs from podman here on purpose (Docker's way, mostly)
    bug: str = ""           # a known difference not fixed yet
    settle: float = 0       # seconds to wait first (a container's output reaching its log)
    hidden: bool = False    # set-up or clean-up: run, not compared


NOT_RUNNING = "Docker's status 1 for a container that is not running; podman's is {}"
NO_SUCH = "Docker's status 1 for a missing container or object; podman's is 125"

DAY: tuple[Step, ...] = (
    Step("run --rm", "run --rm bb echo hello"),
    Step("run -e", "run --rm -e FOO=bar bb sh -c 'echo $FOO'"),
    Step("run -w", "run --rm -w /tmp bb pwd"),
    Step("run -u uid:gid", "run --rm -u 1000:1000 bb id"),
    Step("run exit status", "run --rm bb sh -c 'exit 3'"),
    Step("run unknown command", "run --rm bb no-such-command", compare="status"),
    Step("run -u unknown user", "run --rm -u no-such-user bb id", compare="status",
         purpose="Docker's 125 (its CLI gives 126 for a permission error alone); podman's 126"),
    Step("run bad flag", "run --no-such-flag bb true", compare="status"),
    Step("run -d --name -p",
         "run -d --name web -p 8080:80 bb sh -c 'echo started; sleep 1; echo oops >&2; sleep 1000'"),
    Step("run --name taken", "run -d --name web bb true", compare="status"),
    Step("ps --format", "ps --format '{{.Names}} {{.Status}}'"),
    Step("ps -q", "ps -q"),
    Step("ps --filter name", "ps -a --filter name=web --format '{{.Names}}'"),
    Step("ps .Ports", "ps --format '{{.Names}} {{.Ports}}'"),
    Step("port", "port web"),
    Step("logs", "logs web", compare="streams", settle=2),  # (stdout's and stderr's journal streams
    #                         are two: their order is only sure a moment apart, hence the sleep 1)
    Step("exec", "exec web echo inside"),
    Step("exec -e -w", "exec -e X=1 -w /tmp web sh -c 'echo $X $(pwd)'"),
    Step("exec exit status", "exec web sh -c 'exit 4'"),
    Step("exec -u", "exec -u 1000 web id -u"),
    Step("inspect --format", "inspect --format '{{.State.Running}} {{.State.Status}} {{.Config.Image}}' web"),
    Step("top", "top web", compare="status"),
    Step("pause", "pause web"),
    Step("ps paused", "ps --format '{{.Names}} {{.Status}}'",
         purpose="Docker lists a paused container, `Up ... (Paused)`; podman 4.3's ps leaves it out"),
    Step("unpause", "unpause web"),
    Step("cp into", "cp {work}/in.txt web:/tmp/in.txt"),
    Step("cp out of", "cp web:/tmp/in.txt {work}/out.txt"),
    Step("diff", "diff web", purpose="podman's /etc/hosts and /etc/hostname, made in the container's "
         "layer, show as `C /etc`; Docker and sdctr keep the files they mount out of diff"),
    Step("stop", "stop -t 1 web"),
    Step("ps -a exited", "ps -a --filter status=exited --format '{{.Names}} {{.Status}}'",
         purpose="sdctr's containers run a reaper as PID 1 (as `docker run --init`), which hands the "
                 "command SIGTERM: sh ends at once with 143; podman's sh is PID 1, which ignores "
                 "SIGTERM, and is killed after the grace period (137)"),
    Step("kill not running", "kill web", compare="status", purpose=NOT_RUNNING.format(125)),
    Step("logs --tail", "logs --tail 1 web", compare="streams"),
    Step("logs -f ended", "logs -f web", compare="streams"),
    Step("start", "start web"),
    Step("restart", "restart -t 1 web"),
    Step("kill", "kill web"),
    Step("wait", "wait web"),
    Step("rename", "rename web web2"),
    Step("inspect renamed", "inspect --format '{{.Name}}' web2"),
    Step("exec stopped", "exec web2 true", compare="status", purpose=NOT_RUNNING.format(255)),
    Step("commit", "commit web2 bb-committed"),
    Step("images", "images --format '{{.Repository}}:{{.Tag}}'"),
    Step("tag", "tag bb bb:v2"),
    Step("rmi tag", "rmi bb:v2"),
    Step("rmi committed", "rmi bb-committed", compare="status"),
    Step("rm", "rm web2"),
    Step("volume create", "volume create vol1"),
    Step("volume ls", "volume ls --format '{{.Name}}'"),
    Step("volume in use", "run --rm -v vol1:/data bb sh -c 'echo kept > /data/f; cat /data/f'"),
    Step("volume rm", "volume rm vol1"),
    Step("network create", "network create net1", compare="status"),
    Step("network ls", "network ls --format '{{.Name}}'",
         purpose="the default network's name: Docker's and sdctr's is bridge, podman's podman"),
    Step("network rm", "network rm net1"),
    Step("run -m", "run -d --name lim -m 64m bb sleep 1000", compare="status"),
    Step("update", "update --memory 128m lim", compare="status"),
    Step("inspect memory", "inspect --format '{{.HostConfig.Memory}}' lim",
         purpose="Docker's inspect shows the limit `update` set; podman 4.3's the one it was created with"),
    Step("stats", "stats --no-stream --format '{{.Name}}' lim"),
    Step("rm running", "rm lim", compare="status",
         purpose="Docker's status 1 for a running container that rm will not remove; podman's is 2"),
    Step("rm -f", "rm -f lim"),
    Step("run exited", "run --name done bb true", hidden=True),
    Step("container prune", "container prune -f",
         purpose="Docker's lines: `Deleted Containers:`, the ids, the space reclaimed; podman's: the ids"),
    Step("system df", "system df", compare="status"),
    Step("info", "info", compare="status"),
    Step("version", "version", compare="status"),
    Step("inspect unknown", "inspect no-such", compare="status", purpose=NO_SUCH + " (both print [])"),
    Step("logs unknown", "logs no-such", compare="status", purpose=NO_SUCH),
    Step("stop unknown", "stop no-such", compare="status", purpose=NO_SUCH),
    Step("rm unknown", "rm no-such", compare="status"),
    Step("exec unknown", "exec no-such true", compare="status", purpose=NO_SUCH),
    Step("clean up", "rm -f web web2 lim done", hidden=True),
)


# --- playing the day (stdlib only: this part runs inside the test host too) --------------------

def play(tool: list[str], work: Path, steps: tuple[Step, ...] = DAY) -> dict[str, dict[str, Any]]:
    """Every step's status, stdout and stderr, run with `tool` as the command."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "in.txt").write_text("copied\n")
    results = {}
    for step in steps:
        time.sleep(step.settle)
        argv = [*tool, *shlex.split(step.args.replace("{work}", str(work)))]
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        results[step.key] = {"status": r.returncode, "stdout": r.stdout, "stderr": r.stderr}
    return results


# --- comparing -----------------------------------------------------------------------------------

NORMALISE = (
    (re.compile(r"\r"), ""),
    (re.compile(r"\b(sha256:)?[0-9a-f]{64}\b"), "<id>"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "<id>"),
    (re.compile(r"\b(Up|Exited \(\d+\)|Created) (Less than a second|About an? \w+|\d+ \w+)( ago)?"),
     r"\1 <time>"),
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d\S*( [+-]\d{4} \w+)?"), "<time>"),
    (re.compile(r"\b\d+(\.\d+)?\s?[kKMGT]?i?B\b"), "<size>"),
    (re.compile(r"\blocalhost/"), ""),
    (re.compile(r"\b(podman|sdctr)\b"), "<tool>"),
    (re.compile(r"[ \t]+"), " "),
    (re.compile(r" +$", re.M), ""),
)


def normalise(text: str) -> str:
    for pattern, replacement in NORMALISE:
        text = pattern.sub(replacement, text)
    return text


def seen(result: dict[str, Any], step: Step) -> dict[str, Any]:
    """What a row compares: the status, and the normalised stdout or which streams spoke."""
    if step.compare == "output":
        return {"status": result["status"], "stdout": normalise(result["stdout"])}
    if step.compare == "streams":
        return {"status": result["status"], "stdout": normalise(result["stdout"]),
                "stderr": normalise(result["stderr"])}
    return {"status": result["status"], "stdout": bool(result["stdout"].strip()),
            "stderr": bool(result["stderr"].strip())}


def recorded(result: dict[str, Any], step: Step) -> dict[str, Any]:
    """A result as differential.json keeps it: normalised (nothing that changes from run to run),
    and of a row compared by status, the first line of each stream alone (not podman's info)."""
    kept = {k: normalise(v) if isinstance(v, str) else v for k, v in result.items()}
    if step.compare == "status":
        kept.update({k: kept[k].strip().split("\n")[0] for k in ("stdout", "stderr")})
    return kept


def verdict(step: Step, podman: dict[str, Any], sdctr: dict[str, Any]) -> str:
    """agree, on purpose, known bug, or bug (a difference nobody explained)."""
    if seen(podman, step) == seen(sdctr, step):
        return "agree"
    return "on purpose" if step.purpose else "known bug" if step.bug else "bug"


def expected_verdict(step: Step) -> str:
    return "on purpose" if step.purpose else "known bug" if step.bug else "agree"


def cell(result: dict[str, Any], step: Step) -> str:
    shown = seen(result, step)
    out = shown["stdout"]
    if step.compare == "streams":
        out = f"{out.strip()} (stderr: {shown['stderr'].strip()})"
    elif step.compare == "status":
        out = "+".join(name for name in ("stdout", "stderr") if shown[name]) or "-"
    text = str(out).strip().replace("\n", "⏎ ").replace("|", "\\|").replace("`", "'")
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{shown['status']}: `{text}`" if text else f"{shown['status']}"


def table(podman: dict[str, dict[str, Any]], sdctr: dict[str, dict[str, Any]]) -> str:
    rows = [s for s in DAY if not s.hidden]
    counts: dict[str, int] = {}
    lines = ["| command | podman | sdctr | verdict |", "| --- | --- | --- | --- |"]
    for step in rows:
        v = verdict(step, podman[step.key], sdctr[step.key])
        counts[v] = counts.get(v, 0) + 1
        why = f": {step.purpose}" if v == "on purpose" else f": {step.bug}" if v == "known bug" else ""
        lines.append(f"| `{step.args.replace('{work}', 'DIR')}` | {cell(podman[step.key], step)} | "
                     f"{cell(sdctr[step.key], step)} | {v}{why} |")
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    return f"{len(rows)} commands: {summary}.\n\n" + "\n".join(lines) + "\n"


# --- the two halves ------------------------------------------------------------------------------

def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)  # type: ignore[no-any-return]


def podman_half(tar: Path, work: Path) -> dict[str, dict[str, Any]]:
    """The day against podman, in a network namespace of its own, with a store of its own."""
    netns = f"sdctr-diff-{os.getpid()}"
    conf = work / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n')
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    podman = ["nsenter", f"--net=/run/netns/{netns}", "podman", "--root", str(work / "podman-root"),
              "--runroot", str(work / "podman-run"), "--cgroup-manager", "cgroupfs", "--runtime", "runc",
              "--events-backend", "none", "--network-config-dir", str(work / "cni")]
    run(["ip", "netns", "add", netns])
    try:
        run(["ip", "-n", netns, "link", "set", "lo", "up"])
        run([*podman, "import", str(tar), "bb"], env=env)
        os.environ["CONTAINERS_CONF"] = str(conf)
        try:
            return play(podman, work / "podman-day")
        finally:
            del os.environ["CONTAINERS_CONF"]
            subprocess.run([*podman, "system", "reset", "--force"], capture_output=True, env=env)
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def sdctr_half(tar: Path, host: str | None) -> dict[str, dict[str, Any]]:
    """The day against sdctr in the test host `host`, or a fresh one (removed at the end)."""
    testhost = str(REPO / "tests/testhost/testhost")
    name = host or run([testhost, "up"], timeout=1200).stdout.strip()
    try:
        run([testhost, "cp", str(tar), f"{name}:/root/bb.tar"])
        run([testhost, "cp", __file__, f"{name}:/root/differential.py"])
        run([testhost, "exec", name, "--", "sdctr", "import", "/root/bb.tar", "bb"])
        out = run([testhost, "exec", name, "--", "python3", "/root/differential.py", "play", "sdctr", "--",
                   "/root/day"], timeout=1200).stdout
        return json.loads(out)  # type: ignore[no-any-return]
    finally:
        if not host:
            subprocess.run([testhost, "down", name], capture_output=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["play"]:
        split = argv.index("--")
        print(json.dumps(play(argv[1:split], Path(argv[split + 1]))))
        return 0
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", help="write the Markdown table here (default: stdout)")
    p.add_argument("--host", help="a running test host to use (default: a fresh one)")
    p.add_argument("--record", action="store_true", help=f"write the results to {EXPECTED.name}")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("differential.py needs root")
    sys.path.insert(0, str(REPO / "tests"))
    from helpers.rootfs import build_busybox_rootfs

    with tempfile.TemporaryDirectory(prefix="sdctr-diff-") as tmp:
        work = Path(tmp)
        root = build_busybox_rootfs(work / "rootfs")
        tar = work / "bb.tar"
        run(["tar", "-C", str(root), "-cf", str(tar), "."])
        podman = podman_half(tar, work)
        sdctr = sdctr_half(tar, args.host)
    if args.record:
        EXPECTED.write_text(json.dumps(
            {s.key: {"podman": recorded(podman[s.key], s), "sdctr": recorded(sdctr[s.key], s)}
             for s in DAY if not s.hidden}, indent=1, sort_keys=True) + "\n")
    text = table(podman, sdctr)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
