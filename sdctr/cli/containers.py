"""The container verbs, given their parsed arguments: run, create, start, stop, restart, kill, rm,
wait, ps, inspect, logs, top, stats, exec, export. Flags are sdctr.cli.parser's, the lifecycle
sdctr.runtime's; this module turns one into the other and prints what Docker would print.

`run` and `create` are the hot path: what only the other verbs need is imported inside them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from sdctr import cgroups
from sdctr.cli.output import clip, human_duration, print_docs, table
from sdctr.log import SdctrError, error
from sdctr.options import RunOptions, parse_env, run_options, user_env
from sdctr.paths import Paths
from sdctr.runtime import lifecycle as containers
from sdctr.runtime.resolve import resolve
from sdctr.spec import ContainerSpec
from sdctr.state import NoSuchContainer, find

TYPE_CHECKING = False  # typing costs ~3 ms to import, and run needs none of it
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from sdctr.image.store import Image
    from sdctr.systemd.manager import Systemd
    from sdctr.systemd.properties import Host

    Action = Callable[[Paths, Systemd, Host, ContainerSpec], None]


def paths_of(args: argparse.Namespace) -> Paths:
    return Paths.from_root(args.root)


def systemd_of(args: argparse.Namespace) -> tuple[Systemd, Host]:
    from sdctr.systemd.manager import Systemd

    sd = Systemd()
    return sd, sd.host(force_unit_file=args.unit_file_mode)


# --- run ---------------------------------------------------------------------------------------

def build_spec(options: RunOptions, paths: Paths) -> tuple[ContainerSpec, Image]:
    """The container `options` ask for, and its image (pulled as --pull says). The env files and
    the caller's environment are read before anything is pulled: a bad file stops here."""
    env = user_env(options, os.environ)
    image = image_for_run(options, paths)
    return resolve(options, image, user_env=env), image


def image_for_run(options: RunOptions, paths: Paths) -> Image:
    """The image `run` and `create` use, pulled first as --pull says (progress on stderr, as
    Docker shows it, so that stdout stays the container's)."""
    from sdctr.image import store as images

    if options.pull != "always":
        try:
            return images.resolve(paths, options.image)
        except images.NoSuchImage:
            if options.pull == "never":
                raise
            print(f"Unable to find image '{images.parse_reference(options.image).key}' locally",
                  file=sys.stderr, flush=True)
    from sdctr.image import progress, registry

    with progress.view(sys.stderr) as show:
        return registry.pull(paths, options.image, platform=options.platform, progress=show)


def cmd_run(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    options = run_options(vars(args))
    detach_keys = b""
    if options.tty and not options.detach:  # checked before anything is made
        from sdctr.cli.detachkeys import DEFAULT_DETACH_KEYS, parse_detach_keys

        detach_keys = parse_detach_keys(options.detach_keys or DEFAULT_DETACH_KEYS)
    spec, image = build_spec(options, paths)
    sd, host = systemd_of(args)
    if not spec.attached:
        containers.run(paths, spec, image, sd, host)
        print(spec.id)
        return 0
    from sdctr.cli import attach

    return attach.run_attached(paths, spec, image, sd, host, detach_keys=detach_keys)


def cmd_create(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    spec, image = build_spec(run_options(vars(args)), paths)
    print(containers.create(paths, spec, image).id)
    return 0


# --- lifecycle of existing containers -----------------------------------------------------------

def for_each(args: argparse.Namespace, action: Action) -> int:
    """Docker's multi-container verbs: act on each, report each failure, 1 if any failed."""
    paths = paths_of(args)
    sd, host = systemd_of(args)
    failed = 0
    for ref in args.containers:
        try:
            spec = find(paths, ref)
            if containers.finish_stop_of(paths, sd, spec) and spec.remove:
                raise NoSuchContainer(f"no such container: {ref} (removed: it had stopped)")
            action(paths, sd, host, spec)
            print(ref)
        except SdctrError as e:
            error(str(e), e.hint)
            failed = 1
    return failed


def cmd_start(args: argparse.Namespace) -> int:
    def start(paths: Paths, sd: Systemd, host: Host, spec: ContainerSpec) -> None:
        if not containers.is_running(sd, spec):
            containers.start(paths, _persist_detached(paths, spec), sd, host)
    return for_each(args, start)


def _persist_detached(paths: Paths, spec: ContainerSpec) -> ContainerSpec:
    """A re-start has no terminal to attach to: from now on the container runs detached."""
    from sdctr.state import save_spec

    if spec.attached:
        spec = spec.replace(attached=False)
        save_spec(paths, spec)
    return spec


def cmd_stop(args: argparse.Namespace) -> int:
    def stop(paths: Paths, sd: Systemd, host: Host, spec: ContainerSpec) -> None:
        from sdctr.state import update_status

        # an unless-stopped container stopped by hand stays stopped at the next boot (until
        # it next starts: the init clears this, sdctr.state.record_start)
        update_status(paths, spec.id, stopped_by_user=True)
        containers.stop(sd, spec, args.time)
    return for_each(args, stop)


def cmd_restart(args: argparse.Namespace) -> int:
    def restart(paths: Paths, sd: Systemd, host: Host, spec: ContainerSpec) -> None:
        containers.stop(sd, spec, args.time)
        containers.start(paths, _persist_detached(paths, spec), sd, host)
    return for_each(args, restart)


def cmd_kill(args: argparse.Namespace) -> int:
    signum = parse_signal(args.signal)
    return for_each(args, lambda paths, sd, host, spec: containers.kill(sd, spec, signum))


def parse_signal(value: str) -> int:
    import signal

    if value.isdigit():
        return int(value)
    name = value.upper()
    try:
        return int(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    except KeyError:
        raise SdctrError(f"invalid signal {value!r}", hint="examples: TERM, KILL, HUP, 9") from None


def cmd_rm(args: argparse.Namespace) -> int:
    return for_each(args, lambda paths, sd, host, spec: containers.remove(paths, sd, spec, args.force))


def cmd_wait(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    sd, _ = systemd_of(args)
    for ref in args.containers:
        try:
            spec = find(paths, ref)
        except NoSuchContainer:  # a --rm container removed before we came: its exit status, kept
            code = containers.wait_removed(paths, sd, ref)
            if code is None:
                raise
            print(code)
            continue
        print(containers.wait_exit(paths, spec, sd, attached=False, poll=0.1))
    return 0


# --- looking at containers ---------------------------------------------------------------------

def cmd_ps(args: argparse.Namespace) -> int:
    from sdctr.state import read_status

    paths = paths_of(args)
    sd, _ = systemd_of(args)
    filters = parse_filters(args.filter or [], PS_FILTERS)
    last = 1 if args.latest else args.last
    # as Docker's: a status filter, -n and -l look at stopped containers too
    everyone = args.all or "status" in filters or last is not None
    rows: list[dict[str, Any]] = []
    for spec, active in containers.all_with_state(paths, sd):
        if not everyone and active not in containers.RUNNING_STATES:
            continue
        row = ps_row(spec, active, read_status(paths, spec.id))
        row["Status"] += health_suffix(paths, spec, row["State"])
        if ps_matches(row, filters):
            rows.append(row)
    rows.sort(key=lambda r: r["CreatedAt"], reverse=True)  # newest first
    rows = rows[:last] if last is not None else rows
    if args.size:
        for r in rows:
            r["Size"] = ps_size(paths, r["_spec"])
    if args.quiet:
        for r in rows:
            print(r["Id"] if args.no_trunc else r["ID"])
    elif args.format == "json":
        for r in rows:
            print(json.dumps({k: v for k, v in r.items() if not k.startswith("_")}))
    elif args.format and args.format != "table":
        from sdctr.cli.template import render_all

        docs = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        for line in render_all(args.format, docs):
            print(line)
    else:
        header = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"]
        table(header + (["SIZE"] if args.size else []),
              [[r["Id"] if args.no_trunc else r["ID"], r["Image"],
                json.dumps(r["Command"]) if args.no_trunc else clip(r["Command"], 22),
                r["RunningFor"], r["Status"], r["Names"], *([r["Size"]] if args.size else [])]
               for r in rows])
    return 0


def health_suffix(paths: Paths, spec: ContainerSpec, state: str) -> str:
    """Docker's "Up 5 minutes (healthy)"."""
    if not spec.health_cmd or state != "running":
        return ""
    from sdctr.cli.health import status_suffix

    return status_suffix(paths, spec)


def ps_row(spec: ContainerSpec, active: str | None, status: dict[str, Any]) -> dict[str, Any]:
    """One container as `docker ps --format` names its fields (plus Id, ImageID, ExitCode, Unit,
    and LabelMap for the filters)."""
    paused = False
    if active in containers.RUNNING_STATES:
        state = "restarting" if active == "activating" and status.get("finished_at") else "running"
        from sdctr.runtime import pause

        paused = pause.is_paused(pause.control_group(spec))
        state = "paused" if paused else state
    else:
        state = "exited" if status.get("finished_at") else "created"
    labels = spec.label_map
    return {"ID": spec.short_id, "Id": spec.id, "Image": spec.image, "ImageID": spec.image_id,
            "Command": " ".join(spec.command), "CreatedAt": spec.created,
            "RunningFor": human_duration(time.time() - spec.created) + " ago",
            "Status": ps_status(active, status) + (" (Paused)" if paused else ""),
            "Names": spec.name, "State": state,
            "ExitCode": status.get("exit_code"), "Unit": spec.unit,
            "Labels": ",".join(f"{k}={v}" for k, v in labels.items()), "LabelMap": labels,
            "Mounts": ",".join(m.source for m in spec.mounts),
            "Ports": ports_text(spec) if state in ("running", "paused") else "", "_spec": spec}


def ports_text(spec: ContainerSpec) -> str:
    """Docker's PORTS: `0.0.0.0:8080->80/tcp, ...`, the published ports of a running container."""
    ordered = sorted(spec.ports, key=lambda p: (p.container_port, p.proto, p.host_ip, p.host_port))
    return ", ".join(f"{p.host_ip or '0.0.0.0'}:{p.host_port}->{p.container_port}/{p.proto}" for p in ordered)


def ps_size(paths: Paths, spec: ContainerSpec) -> str:
    """`docker ps -s`'s SIZE: the writable layer's bytes, and with the image's, the virtual size."""
    from sdctr.image.progress import human_size
    from sdctr.runtime.hooks import snapshotter_of

    own = 0
    snapshot = snapshotter_of(paths, spec).snapshot_dir(spec.id)
    if snapshot is not None:
        for d, _, files in os.walk(snapshot):
            for f in files:
                try:
                    own += os.lstat(os.path.join(d, f)).st_blocks * 512
                except OSError:
                    continue
    return human_size(own)


# --- filters (docker ps --filter): pure, tested without a container -----------------------------

PS_FILTERS = ("ancestor", "exited", "id", "label", "name", "status")
PS_STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def parse_filters(values: list[str], keys: tuple[str, ...]) -> dict[str, list[str]]:
    """--filter KEY=VALUE, repeated: the values by key. A key not in `keys`, or a value that no
    container could have, is an error (status 125), as Docker's."""
    import re

    filters: dict[str, list[str]] = {}
    for text in values:
        key, eq, value = text.partition("=")
        key = key.strip().lower()
        if not eq or key not in keys:
            raise SdctrError(f"--filter {text!r} is not a filter",
                             hint=f"KEY=VALUE, the keys: {', '.join(keys)}")
        if key == "status" and value not in PS_STATES:
            raise SdctrError(f"--filter {text!r}: {value!r} is not a status",
                             hint=f"one of {', '.join(PS_STATES)}")
        if key == "exited" and not value.lstrip("-").isdigit():
            raise SdctrError(f"--filter {text!r}: {value!r} is not an exit code")
        if key in ("name", "id"):
            try:
                re.compile(value)
            except re.error as e:
                raise SdctrError(f"--filter {text!r}: not a regular expression ({e})") from None
        filters.setdefault(key, []).append(value)
    return filters


def ps_matches(row: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """Docker's rules: the values of one key are alternatives, every key must hold, and so must
    every label; name and id are regular expressions searched in the name and the full id."""
    import re

    def any_of(key: str, test: Callable[[str], bool]) -> bool:
        return key not in filters or any(test(v) for v in filters[key])

    def label(want: str) -> bool:
        key, eq, value = want.partition("=")
        return key in row["LabelMap"] and (not eq or row["LabelMap"][key] == value)

    def ancestor(ref: str) -> bool:
        hexid = ref.removeprefix("sha256:")
        name = ref if ":" in ref.rsplit("/", 1)[-1] or "@" in ref else f"{ref}:latest"
        return row["Image"] in (ref, name) or (len(hexid) >= 4 and row["ImageID"].startswith(hexid))

    return (any_of("name", lambda v: re.search(v, row["Names"]) is not None)
            and any_of("id", lambda v: re.search(v, row["Id"]) is not None)
            and any_of("status", lambda v: row["State"] == v)
            and any_of("ancestor", ancestor)
            and any_of("exited", lambda v: row["State"] == "exited" and row["ExitCode"] == int(v))
            and all(label(v) for v in filters.get("label", ())))


def ps_status(active: str | None, status: dict[str, Any]) -> str:
    """`docker ps`'s STATUS: "Up 5 minutes", "Exited (0) 2 hours ago", "Created"."""
    now = time.time()
    if active in containers.RUNNING_STATES:
        return f"Up {human_duration(now - status.get('started_at', now))}"
    if status.get("finished_at"):
        return (f"Exited ({status.get('exit_code')}) "
                f"{human_duration(now - status['finished_at'])} ago")
    return "Created"


def cmd_inspect(args: argparse.Namespace) -> int:
    """Containers by name or id, and (as Docker) images where no container has that name; as
    Docker, what is found is shown (`[]` if nothing is), then a line for each that is not, status 1."""
    from sdctr.state import NoSuchContainer

    paths = paths_of(args)
    sd = None
    docs, missing = [], []
    for ref in args.containers:
        spec = None
        try:
            if args.type != "image":
                try:
                    spec = find(paths, ref)
                except NoSuchContainer:
                    if args.type == "container":
                        raise
            if spec is None:
                docs.append(_image_doc(paths, ref))
                continue
        except SdctrError as e:
            if e.status != 1:
                raise
            missing.append(e)
            continue
        sd = sd or systemd_of(args)[0]
        unit = sd.unit_state(spec.unit)
        if unit:
            unit["NRestarts"] = sd.restarts(spec.unit)
        docs.append(containers.describe(paths, spec, unit))
    print_docs(docs, args.format)
    if len(missing) == 1:
        raise missing[0]
    for each in missing:
        error(str(each))
    return 1 if missing else 0


def _image_doc(paths: Paths, ref: str) -> dict[str, Any]:
    from sdctr.image import store as images

    try:
        return images.inspect(paths, images.resolve(paths, ref))
    except images.NoSuchImage:
        raise SdctrError(f"no such object: {ref}", status=1,  # as `docker inspect`
                         hint="neither a container nor an image has that name or id") from None


def cmd_logs(args: argparse.Namespace) -> int:
    from sdctr.runtime import logs

    paths = paths_of(args)
    spec = find(paths, args.container)
    running = None
    if args.follow:  # -f ends when the container does, as in Docker
        sd, _ = systemd_of(args)
        running = lambda: containers.is_running(sd, spec)  # noqa: E731
    return logs.show(spec, follow=args.follow, tail=args.tail, since=args.since,
                     timestamps=args.timestamps, until=args.until, running=running)


def cmd_top(args: argparse.Namespace) -> int:
    from sdctr.external import run

    paths = paths_of(args)
    sd, _ = systemd_of(args)
    spec = find(paths, args.container)
    pids = cgroups.processes(containers.running_unit(sd, spec).get("ControlGroup", ""))
    r = run(["ps", "-f", "-p", ",".join(str(p) for p in pids)], check=False)
    print(r.stdout, end="")
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from sdctr.init import enter

    paths = paths_of(args)
    sd, _ = systemd_of(args)
    spec = find(paths, args.container)
    unit = containers.running_unit(sd, spec)
    from sdctr.runtime import pause

    if pause.is_paused(unit.get("ControlGroup") or pause.control_group(spec)):  # it would freeze too
        raise SdctrError(f"container {spec.name} is paused, unpause the container before exec",
                         status=1)  # Docker's status, as for one that is not running
    from sdctr.options import read_env_file

    env = [e for path in args.env_file for e in read_env_file(path, os.environ)]
    env += parse_env(args.env, os.environ)
    if args.tty:  # as a login's terminal: ours, which the pty's relay speaks to (-e wins)
        env.insert(0, f"TERM={os.environ.get('TERM') or 'xterm'}")
    try:
        return enter.exec_in(spec, int(unit["MainPID"]), unit, list(args.command),
                             env=env, workdir=args.workdir, user=args.user, tty=args.tty,
                             interactive=args.interactive and not args.detach, detach=args.detach)
    except (FileNotFoundError, ProcessLookupError):  # /proc/PID/ns/*: it went meanwhile
        if os.path.exists(f"/proc/{unit['MainPID']}"):
            raise
        raise SdctrError(f"container {spec.name} is restarting or stopping (its process went as exec "
                         "joined it)", hint="try again once it runs") from None


def cmd_export(args: argparse.Namespace) -> int:
    from sdctr.image import archive
    from sdctr.image import store as images

    paths = paths_of(args)
    spec = find(paths, args.container)
    archive.export(paths, spec.id, images.resolve(paths, spec.image_id), args.output)
    return 0


# --- stats: usage straight from the unit's cgroup files, v1 or v2 alike -------------------------

def cmd_stats(args: argparse.Namespace) -> int:
    """Docker's columns, from the unit's cgroup (CPU over half a second, memory, block I/O:
    CPUAccounting and IOAccounting are on) and its veths' counters (network I/O, as the
    container sees it); --format's fields are Docker's (.Name, .CPUPerc, .NetIO, ...)."""
    paths = paths_of(args)
    sd, _ = systemd_of(args)
    chosen = [find(paths, c) for c in args.containers] or [
        s for s, active in containers.all_with_state(paths, sd) if active in containers.RUNNING_STATES]
    while True:
        units = {s.id: sd.unit_state(s.unit) for s in chosen}
        first = {cid: cgroups.usage(u.get("ControlGroup", "")) for cid, u in units.items()}
        t0 = time.monotonic()
        time.sleep(0.5)
        elapsed = time.monotonic() - t0
        docs = [stats_doc(s, first[s.id], cgroups.usage(units[s.id].get("ControlGroup", "")), elapsed)
                for s in chosen]
        if not args.no_stream:
            print("\033[2J\033[H", end="")
        if args.format == "json":
            for d in docs:
                print(json.dumps(d))
        elif args.format:
            from sdctr.cli.template import render_all

            for line in render_all(args.format, docs, STATS_HEADERS):
                print(line)
        else:
            table(list(STATS_HEADERS.values())[1:],
                  [[d["ID"], d["Name"], d["CPUPerc"], d["MemUsage"], d["MemPerc"], d["NetIO"], d["BlockIO"],
                    d["PIDs"]] for d in docs])
        if args.no_stream:
            return 0


STATS_HEADERS = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
                 "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
                 "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}


def stats_doc(spec: ContainerSpec, before: dict[str, int], now: dict[str, int],
              elapsed: float) -> dict[str, str]:
    """One container's `docker stats` fields, as Docker writes them (binary units for memory,
    decimal for I/O)."""
    from sdctr.image.progress import human_size

    cpu = max(0, now["cpu_ns"] - before["cpu_ns"]) / (elapsed * 1e9) * 100  # (a process may go)
    limit = min(now["memory_limit"] or host_memory(), host_memory())  # "no limit" is the host's
    received, sent = net_io(spec)
    return {"Container": spec.short_id, "ID": spec.short_id, "Name": spec.name, "CPUPerc": f"{cpu:.2f}%",
            "MemUsage": f"{human_size(now['memory'], True)} / {human_size(limit, True)}",
            "MemPerc": f"{now['memory'] / limit * 100:.2f}%",
            "NetIO": f"{human_size(received)} / {human_size(sent)}" if received is not None else "--",
            "BlockIO": f"{human_size(now['block_read'])} / {human_size(now['block_write'])}",
            "PIDs": str(now["pids"])}


def net_io(spec: ContainerSpec) -> tuple[int | None, int]:
    """Bytes the container received and sent on its bridge interfaces: its veths' host ends
    count them the other way round. (None: no veth of ours, --network host or none.)"""
    from sdctr.net.setup import extra_veths, veth_name

    received, sent, found = 0, 0, False
    for veth in (veth_name(spec.id), *extra_veths(spec.id).values()):
        counters = f"/sys/class/net/{veth}/statistics"
        try:
            with open(f"{counters}/tx_bytes") as tx, open(f"{counters}/rx_bytes") as rx:
                received += int(tx.read())
                sent += int(rx.read())
                found = True
        except (OSError, ValueError):
            continue
    return (received if found else None), sent


def host_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 1


# --- system -------------------------------------------------------------------------------------

def cmd_system_gc(args: argparse.Namespace) -> int:
    """What no running container owns, removed, one line each (as `docker system prune` says)."""
    from sdctr.net import setup
    from sdctr.state import all_specs

    paths = paths_of(args)
    sd, _ = systemd_of(args)
    states = sd.active_states()
    # not all_with_state(): the stops it finishes on the way would take down, without a word,
    # the very leftovers gc is to find and name (a pin and veth of a removed container)
    live = {s.id for s in all_specs(paths) if states.get(s.unit) in containers.RUNNING_STATES}
    removed = setup.gc(paths, live)
    removed += gone_declared(paths, sd, live)
    for what in removed:
        print(f"removed {what}")
    print(f"{len(removed)} left-overs removed")
    return 0


def gone_declared(paths: Paths, sd: Systemd, live: set[str]) -> list[str]:
    """Declared containers whose file was removed, not running: removed as `rm` would, record,
    snapshot and `sdctr update`'s drop-ins with them (the generator, which sees the file go,
    may write nothing outside its output directories). Quadlet's containers go with their
    file the same way (its units run them with --rm)."""
    from sdctr.options import declared_dir
    from sdctr.state import all_specs

    removed = []
    for spec in all_specs(paths):
        if spec.declared and spec.id not in live and \
                not os.path.exists(os.path.join(declared_dir(), f"{spec.name}.yaml")):
            containers.remove(paths, sd, spec, force=False)
            removed.append(f"declared container {spec.name} (its file is gone)")
    return removed
