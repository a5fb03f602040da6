"""The verbs that manage containers beyond their lifecycle, as Docker spells and prints them:
pause, unpause, rename, top, diff, cp, commit, container prune, system df, system prune, info,
version. The work is sdctr.runtime's (pause, changes, copy); this module prints.

Exit statuses as Docker's: 1 when a container is missing (sdctr.cli.parser) or a multi-container
verb failed for one of them, 125 for sdctr's own errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from sdctr.cli.containers import for_each, paths_of, systemd_of
from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.spec import ContainerSpec
from sdctr.state import find

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sdctr.systemd.manager import Systemd
    from sdctr.systemd.properties import Host


# --- pause, unpause -----------------------------------------------------------------------------

def cmd_pause(args: argparse.Namespace) -> int:
    from sdctr.runtime import lifecycle, pause

    def freeze(paths: Paths, sd: Systemd, host: Host, spec: ContainerSpec) -> None:
        unit = lifecycle.running_unit(sd, spec)
        cg = unit.get("ControlGroup") or pause.control_group(spec)
        if pause.is_paused(cg):
            raise SdctrError(f"container {spec.name} is already paused",
                             hint=f"'sdctr unpause {spec.name}' resumes it")
        pause.freeze(sd, host, spec, cg)
        _emit(spec, "pause")
    return for_each(args, freeze)


def cmd_unpause(args: argparse.Namespace) -> int:
    from sdctr.runtime import lifecycle, pause

    def thaw(paths: Paths, sd: Systemd, host: Host, spec: ContainerSpec) -> None:
        unit = lifecycle.running_unit(sd, spec)
        cg = unit.get("ControlGroup") or pause.control_group(spec)
        if not pause.is_paused(cg):
            raise SdctrError(f"container {spec.name} is not paused")
        pause.thaw(sd, host, spec, cg)
        _emit(spec, "unpause")
    return for_each(args, thaw)


def _emit(spec: ContainerSpec, action: str, **attributes: str) -> None:
    from sdctr.runtime import events

    events.emit(spec, action, **attributes)


# --- rename -------------------------------------------------------------------------------------

def cmd_rename(args: argparse.Namespace) -> int:
    """`docker rename OLD NEW`: the record's name, claimed under the store's lock. The unit keeps
    its id-based name; its journal identifier follows at the next start."""
    from sdctr.options import parse_name
    from sdctr.state import locked, save_spec

    paths = paths_of(args)
    new = parse_name("the new name", args.new_name)
    with locked(paths):
        spec = find(paths, args.container)
        if spec.declared:
            raise SdctrError(f"container {spec.name} is declared in /etc/sdctr/containers: its name is "
                             "its file's", hint="rename the file instead")
        if spec.name == new:
            raise SdctrError(f"renaming container {spec.name!r} to the same name")
        renamed = save_spec(paths, spec.replace(name=new))
    _emit(renamed, "rename", oldName=spec.name)
    return 0


# --- cp -----------------------------------------------------------------------------------------

def cmd_cp(args: argparse.Namespace) -> int:
    """`docker cp [-a] [-L] SRC DEST`: one of them CONTAINER:PATH, the other a host path or "-"
    (a tar stream on stdout or stdin). Paths in the container are relative to its "/"."""
    from sdctr.runtime import copy

    (src_ref, src), (dest_ref, dest) = _cp_arg(args.src), _cp_arg(args.dest)
    if (src_ref is None) == (dest_ref is None):
        raise SdctrError("copying between containers is not supported" if src_ref else
                         "one of SRC and DEST must be CONTAINER:PATH", hint="see 'sdctr cp --help'")
    paths = paths_of(args)
    spec = find(paths, src_ref or dest_ref or "")
    sd, _ = systemd_of(args)
    if src_ref and dest == "-" and sys.stdout.isatty():
        raise SdctrError("refusing to write a tar archive to a terminal", hint="redirect stdout")
    with copy.container_root(paths, sd, spec) as root:
        try:
            if src_ref:
                _copy_out(root, spec, src, dest, args)
            else:
                _copy_in(root, spec, src, dest, args)
        except OSError as e:
            raise SdctrError(f"cp: {e.filename or ''}{': ' if e.filename else ''}{e.strerror}") from None
    return 0


def _cp_arg(arg: str) -> tuple[str | None, str]:
    """(container, path) of CONTAINER:PATH; (None, arg) for a host path (one that starts with "/"
    or ".", or has no colon, as Docker tells them apart)."""
    if arg == "-" or arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    ref, _, path = arg.partition(":")
    return ref, path or "/"


def _missing(spec: ContainerSpec, path: str) -> SdctrError:
    return SdctrError(f"no such file or directory in container {spec.name}: {path}", status=1)


def _copy_out(root: int, spec: ContainerSpec, src: str, dest: str, args: argparse.Namespace) -> None:
    from sdctr.runtime import copy

    parent, name = copy.split_path(src)
    shown = name
    if args.follow_link and name != ".":
        try:
            parts = copy.resolve_in_root(root, src)
        except (FileNotFoundError, NotADirectoryError):
            raise _missing(spec, src) from None
        parent, name = "/" + "/".join(parts[:-1]), (parts[-1] if parts else ".")
    try:
        pfd = copy.open_in_root(root, parent, os.O_PATH | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        raise _missing(spec, src) from None
    try:
        try:
            os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            raise _missing(spec, src) from None
        if dest == "-":
            sys.stdout.flush()
            copy.write_tar(pfd, name, sys.stdout.buffer)
            return
        dparent, dname = (dest, ".") if os.path.isdir(dest) else copy.split_path(dest)
        try:
            dfd = os.open(dparent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise SdctrError(f"the destination directory {dparent} does not exist") from None
        try:
            skipped = copy.copy(pfd, name, dfd, dname, dest, owner=args.archive, as_name=shown, devices=False)
            if skipped:
                print(f"sdctr: warning: {len(skipped)} device node(s) not copied to the host: "
                      f"{', '.join(skipped[:5])}", file=sys.stderr)
        finally:
            os.close(dfd)
    finally:
        os.close(pfd)


def _copy_in(root: int, spec: ContainerSpec, src: str, dest: str, args: argparse.Namespace) -> None:
    from sdctr.runtime import copy

    if src == "-":
        try:
            dfd = copy.open_in_root(root, dest, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            raise SdctrError(f"the destination {dest} is not a directory in container {spec.name}",
                             hint="a tar stream is unpacked into a directory") from None
        try:
            copy.extract_tar(sys.stdin.buffer, dfd, owner=args.archive)
        finally:
            os.close(dfd)
        return
    if args.follow_link:
        src = os.path.realpath(src)
    parent, name = copy.split_path(src)
    if not os.path.lexists(src):
        raise SdctrError(f"no such file or directory: {src}", status=1)
    sfd = os.open(parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:  # an existing directory, through its symlinks as resolved in the container
            dfd = copy.open_in_root(root, dest, os.O_PATH | os.O_DIRECTORY)
            dname = "."
        except (FileNotFoundError, NotADirectoryError):
            dparent, dname = copy.split_path(dest)
            try:
                dfd = copy.open_in_root(root, dparent, os.O_PATH | os.O_DIRECTORY)
            except (FileNotFoundError, NotADirectoryError):
                raise SdctrError(f"the destination directory {dparent} does not exist in container "
                                 f"{spec.name}") from None
        try:
            copy.copy(sfd, name, dfd, dname, dest, owner=args.archive)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


# --- top, diff, commit --------------------------------------------------------------------------

def cmd_top(args: argparse.Namespace) -> int:
    """`docker top CONTAINER [ps OPTIONS]`: ps (default -ef) of the processes in the unit's cgroup,
    its header and their lines only."""
    from sdctr import cgroups
    from sdctr.external import run
    from sdctr.runtime import lifecycle

    paths = paths_of(args)
    spec = find(paths, args.container)  # a missing container is said before systemd is asked
    sd, _ = systemd_of(args)
    pids = set(cgroups.processes(lifecycle.running_unit(sd, spec).get("ControlGroup", "")))
    r = run(["ps", *(args.ps_options or ["-ef"])], check=False)
    lines = r.stdout.splitlines()
    if r.returncode != 0 or not lines:
        raise SdctrError(f"ps {' '.join(args.ps_options)} failed: {r.stderr.strip()}")
    header = lines[0].split()
    if "PID" not in header:
        raise SdctrError("ps's output has no PID column",
                         hint="give ps options that show it (e.g. -o pid,cmd)")
    column = header.index("PID")
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            print(line)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from sdctr.runtime import changes

    paths = paths_of(args)
    spec = find(paths, args.container)
    upper, lowers = changes.layers(paths, spec)
    for kind, path in changes.changes(upper, lowers, changes.mount_points(spec)):
        print(f"{kind} {path}")
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    """`docker commit [-a] [-c] [-m] [-p] CONTAINER [REPOSITORY[:TAG]]`: prints the new image id."""
    import contextlib

    from sdctr.image import store as images
    from sdctr.runtime import changes, pause

    paths = paths_of(args)
    spec = find(paths, args.container)
    if args.reference:
        images.tag_reference(args.reference)  # a bad name fails before the layer is written
    wanted = images.parse_changes(args.change)
    frozen = contextlib.ExitStack()
    with frozen:
        if args.pause:  # the layer is read as one moment of the container, as Docker does
            sd, host = systemd_of(args)
            cg = pause.control_group(spec)
            if sd.main_pid(spec.unit) and not pause.is_paused(cg):
                pause.freeze(sd, host, spec, cg)
                frozen.callback(pause.thaw, sd, host, spec, cg)
        image = changes.commit(paths, spec, args.reference, changes=wanted, comment=args.message or "",
                               author=args.author or "")
    _emit(spec, "commit", comment=args.message or "")
    print(f"sha256:{image.id}")
    return 0


# --- container prune, system df, system prune ---------------------------------------------------

def _confirm(lines: list[str], force: bool) -> bool:
    """Docker's prompt before a prune, unless -f."""
    if force:
        return True
    print("\n".join(lines) + "\nAre you sure you want to continue? [y/N] ", end="", flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _writable_size(paths: Paths, spec: ContainerSpec) -> int:
    """The bytes of the container's writable layer (what `ps -s` shows)."""
    from sdctr.runtime.hooks import snapshotter_of

    snapshot = snapshotter_of(paths, spec).snapshot_dir(spec.id)
    total = 0
    for d, _, files in os.walk(snapshot) if snapshot is not None else ():
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_blocks * 512
            except OSError:
                continue
    return total


def _prune_containers(paths: Paths, sd: Systemd, filters: dict[str, list[str]]) -> tuple[list[str], int]:
    """Every container that is not running (and matches `filters`: until, label) removed: (ids, bytes)."""
    from sdctr.runtime import lifecycle

    removed, freed = [], 0
    for spec, active in lifecycle.all_with_state(paths, sd):
        if active in lifecycle.RUNNING_STATES or not _prune_matches(spec, filters):
            continue
        size = _writable_size(paths, spec)
        lifecycle.remove(paths, sd, spec, force=False)
        removed.append(spec.id)
        freed += size
    return removed, freed


def _prune_filters(values: list[str]) -> dict[str, list[str]]:
    from sdctr.cli.containers import parse_filters

    # label!=KEY[=VALUE]: the containers without that label, as Docker's prune filter has it
    values = [f"label=!{v[len('label!='):]}" if v.startswith("label!=") else v for v in values]
    filters = parse_filters(values, ("label", "until"))
    for until in filters.get("until", ()):
        _until(until)  # a bad time fails before anything is removed
    return filters


def _until(value: str) -> float:
    """--filter until=: Docker's forms (10m, 2h30m, RFC 3339, Unix seconds) as a Unix time."""
    from sdctr.runtime.logs import parse_time

    return parse_time("--filter until", value)


def _prune_matches(spec: ContainerSpec, filters: dict[str, list[str]]) -> bool:
    labels = spec.label_map

    def label(want: str) -> bool:
        negate = want.startswith("!")
        key, eq, value = want.lstrip("!").partition("=")
        has = key in labels and (not eq or labels[key] == value)
        return has != negate
    return (all(label(v) for v in filters.get("label", ()))
            and all(spec.created < _until(v) for v in filters.get("until", ())))


def _prune_and_list_containers(paths: Paths, args: argparse.Namespace, filters: Any) -> int:
    """container prune's part, also system prune's first: prints the ids removed; bytes freed."""
    sd, _ = systemd_of(args)
    removed, freed = _prune_containers(paths, sd, filters)
    if removed:
        print("Deleted Containers:\n" + "".join(f"{cid}\n" for cid in removed))
    return freed


def cmd_container_prune(args: argparse.Namespace) -> int:
    from sdctr.image.progress import human_size

    filters = _prune_filters(args.filter or [])
    if not _confirm(["WARNING! This will remove all stopped containers."], args.force):
        return 0
    paths = paths_of(args)
    freed = _prune_and_list_containers(paths, args, filters)
    print(f"Total reclaimed space: {human_size(freed, digits=4)}")
    return 0


def cmd_system_prune(args: argparse.Namespace) -> int:
    """`docker system prune [-a] [-f]`: stopped containers, then images no container uses (dangling
    ones; with -a every one), then what a crash left (sdctr system gc)."""
    from sdctr.cli.images import print_deleted_images
    from sdctr.image import store as images
    from sdctr.image.progress import human_size
    from sdctr.state import all_specs

    filters = _prune_filters(args.filter or [])
    which = ("all images without at least one container associated to them" if args.all
             else "all dangling images")
    if not _confirm(["WARNING! This will remove:", "  - all stopped containers", f"  - {which}", ""],
                    args.force):
        return 0
    paths = paths_of(args)
    freed = _prune_and_list_containers(paths, args, filters)
    lines, image_bytes = images.prune(paths, {s.image_id for s in all_specs(paths)}, unused_too=args.all)
    print_deleted_images(lines)
    print(f"Total reclaimed space: {human_size(freed + image_bytes, digits=4)}")
    return 0


def cmd_system_df(args: argparse.Namespace) -> int:
    """`docker system df`: images and containers, their count, how many are in use, their size
    and what removing the unused would free."""
    from sdctr.image import store as images
    from sdctr.image.progress import human_size
    from sdctr.runtime import lifecycle

    paths = paths_of(args)
    sd, _ = systemd_of(args)
    containers = lifecycle.all_with_state(paths, sd)
    used = {s.image_id for s, _ in containers}
    all_images = {i.id: i for i in images.list_images(paths)}.values()  # one per id
    image_size = sum(i.size for i in all_images)
    unused_images = sum(i.size for i in all_images if i.id not in used)
    sizes = [(_writable_size(paths, s), a in lifecycle.RUNNING_STATES) for s, a in containers]
    rows: list[dict[str, Any]] = [
        {"Type": "Images", "TotalCount": len(all_images),
         "Active": sum(1 for i in all_images if i.id in used),
         "Size": image_size, "Reclaimable": unused_images},
        {"Type": "Containers", "TotalCount": len(sizes),
         "Active": sum(1 for _, running in sizes if running),
         "Size": sum(n for n, _ in sizes), "Reclaimable": sum(n for n, running in sizes if not running)},
    ]
    if args.format == "json":
        for r in rows:
            print(json.dumps({**r, "Size": human_size(r["Size"]), "Reclaimable": _reclaimable(r)}))
        return 0
    from sdctr.cli.output import table

    table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
          [[r["Type"], str(r["TotalCount"]), str(r["Active"]), human_size(r["Size"]), _reclaimable(r)]
           for r in rows])
    return 0


def _reclaimable(row: dict[str, Any]) -> str:
    from sdctr.image.progress import human_size

    percent = row["Reclaimable"] * 100 // row["Size"] if row["Size"] else 0
    return f"{human_size(row['Reclaimable'])} ({percent}%)"


# --- info, version, storage status ---------------------------------------------------------------

def storage_doc(paths: Paths, specs: list[Any]) -> dict[str, Any]:
    """The driver a new container gets and why (sdctr.yaml, or what auto found), its status lines,
    and the drivers the containers recorded (a host whose setting changed keeps running those)."""
    from sdctr.storage import drivers
    from sdctr.thinhost import chosen_driver

    name, why = chosen_driver(paths.root)
    by_driver: dict[str, int] = {}
    for spec in specs:
        d = spec.storage or drivers.LEGACY
        by_driver[d] = by_driver.get(d, 0) + 1
    others = sorted(set(by_driver) - {name})
    return {"Driver": name, "DriverReason": why, "DriverStatus": drivers.status(name, paths),
            "ContainersByDriver": by_driver,
            "OtherDriverStatus": {d: drivers.status(d, paths) for d in others}}


def _status_lines(rows: list[tuple[str, Any]], indent: str) -> list[str]:
    from sdctr.image.progress import human_size

    def shown(key: str, value: Any) -> str:
        sized = isinstance(value, int) and ("Space" in key or key.endswith(("Size", "Blocksize")))
        return human_size(value) if sized else str(value)

    return [f"{indent}{k}: {shown(k, v)}" for k, v in rows]


def _storage_lines(doc: dict[str, Any], indent: str) -> list[str]:
    lines = [f"{indent}Storage Driver: {doc['Driver']}", f"{indent} Chosen By: {doc['DriverReason']}",
             *_status_lines(doc["DriverStatus"], indent + " ")]
    if doc["ContainersByDriver"]:
        lines.append(f"{indent} Containers By Driver: " + ", ".join(
            f"{d} {n}" for d, n in sorted(doc["ContainersByDriver"].items())))
    for d, rows in doc["OtherDriverStatus"].items():  # old containers' driver, still served
        lines += [f"{indent}Storage Driver (in use): {d}", *_status_lines(rows, indent + " ")]
    return lines


def cmd_storage_status(args: argparse.Namespace) -> int:
    """`sdctr storage status`: the storage part of `info`, the thin pool's data and metadata use."""
    from sdctr.state import all_specs

    paths = paths_of(args)
    doc = storage_doc(paths, all_specs(paths))
    if args.format == "json":
        print(json.dumps(doc))
        return 0
    print("\n".join(_storage_lines(doc, "")))
    return 0


def info_doc(args: argparse.Namespace) -> dict[str, Any]:
    """`docker info`'s fields (its names), for this host: systemd is the engine."""
    import platform

    from sdctr import __version__
    from sdctr.image import store as images
    from sdctr.runtime import lifecycle, pause
    from sdctr.systemd.properties import FIRST_LOG_RATE_LIMIT

    paths = paths_of(args)
    sd, host = systemd_of(args)
    states = lifecycle.all_with_state(paths, sd)
    running = [s for s, a in states if a in lifecycle.RUNNING_STATES]
    paused = sum(1 for s in running if pause.is_paused(pause.control_group(s)))
    version = sd.version()  # the host's, whatever --unit-file-mode pretends
    warnings = []
    if version < FIRST_LOG_RATE_LIMIT:
        warnings.append(f"WARNING: systemd {version} has no per-unit LogRateLimitIntervalSec "
                        "(v240 on): journald's own limit drops a chatty container's lines; set "
                        "RateLimitIntervalSec=0 in /etc/systemd/journald.conf")
    storage = storage_doc(paths, [s for s, _ in states])
    return {
        **storage,
        "ID": _machine_id(), "Containers": len(states), "ContainersRunning": len(running) - paused,
        "ContainersPaused": paused, "ContainersStopped": len(states) - len(running),
        "Images": len({i.id for i in images.list_images(paths)}),
        "LoggingDriver": "journald", "CgroupDriver": "systemd",
        "CgroupVersion": str(host.cgroup_version), "SystemdVersion": version,
        "KernelVersion": platform.release(), "OperatingSystem": _os_name(), "OSType": "linux",
        "Architecture": platform.machine(), "NCPU": os.cpu_count() or 0, "MemTotal": _mem_total(),
        "Name": platform.node(), "ServerVersion": __version__, "DockerRootDir": str(paths.root),
        "InitBinary": "sdctr init", "Warnings": warnings,
    }


def cmd_info(args: argparse.Namespace) -> int:
    from sdctr.image.progress import human_size

    doc = info_doc(args)
    if args.format == "json":
        print(json.dumps(doc))
        return 0
    if args.format:
        from sdctr.cli.output import render_format

        print(render_format(args.format, doc))
        return 0
    print("\n".join([
        "Client:", f" Version:    {doc['ServerVersion']}", " Context:    default", "",
        "Server:",
        f" Containers: {doc['Containers']}", f"  Running: {doc['ContainersRunning']}",
        f"  Paused: {doc['ContainersPaused']}", f"  Stopped: {doc['ContainersStopped']}",
        f" Images: {doc['Images']}", f" Server Version: {doc['ServerVersion']}",
        *_storage_lines(doc, " "), f" Logging Driver: {doc['LoggingDriver']}",
        f" Cgroup Driver: {doc['CgroupDriver']}", f" Cgroup Version: {doc['CgroupVersion']}",
        f" systemd Version: {doc['SystemdVersion']}", f" Init Binary: {doc['InitBinary']}",
        f" Kernel Version: {doc['KernelVersion']}", f" Operating System: {doc['OperatingSystem']}",
        f" OSType: {doc['OSType']}", f" Architecture: {doc['Architecture']}", f" CPUs: {doc['NCPU']}",
        f" Total Memory: {human_size(doc['MemTotal'], True)}", f" Name: {doc['Name']}",
        f" ID: {doc['ID']}", f" Docker Root Dir: {doc['DockerRootDir']}",
    ]))
    for w in doc["Warnings"]:
        print(w, file=sys.stderr)  # as Docker prints its warnings
    return 0


def _machine_id() -> str:
    try:
        with open("/etc/machine-id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    from sdctr.cli.containers import host_memory

    return host_memory()


def cmd_version(args: argparse.Namespace) -> int:
    """`docker version`: the client (sdctr) and the server, which for a daemonless sdctr is the
    host's systemd."""
    import platform

    from sdctr import __version__

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    client = {"Version": __version__, "PythonVersion": platform.python_version(),
              "Os": "linux", "Arch": arch}
    server: dict[str, Any] | None
    error: Exception | None = None
    try:
        sd, _ = systemd_of(args)
        systemd = sd.version()
        server = {"Version": __version__, "Os": "linux", "Arch": arch, "KernelVersion": platform.release(),
                  "Components": [{"Name": "systemd", "Version": str(systemd)}]}
    except Exception as e:  # no systemd to ask (BusError, OSError): the client's part still prints
        server, error = None, SdctrError(f"cannot reach systemd: {e}")
    doc = {"Client": client, "Server": server}
    if args.format == "json":
        print(json.dumps(doc))
    elif args.format:
        from sdctr.cli.output import render_format

        print(render_format(args.format, doc))
    else:
        lines = ["Client:", f" Version:           {client['Version']}",
                 f" Python version:    {client['PythonVersion']}", f" OS/Arch:           linux/{arch}"]
        if server:
            lines += ["", "Server: sdctr (daemonless: every container a systemd unit)",
                      " Engine:", f"  Version:          {server['Version']}",
                      f"  OS/Arch:          linux/{arch}", f"  Kernel Version:   {server['KernelVersion']}",
                      " systemd:", f"  Version:          {systemd}"]
        print("\n".join(lines))
    if error is not None:
        raise error
    return 0


# --- events -------------------------------------------------------------------------------------

def cmd_events(args: argparse.Namespace) -> int:
    """`docker events [--since] [--until] [--filter] [--format]`: past events from --since, then
    new ones as they come, until --until (or an interrupt)."""
    from sdctr.cli.containers import parse_filters
    from sdctr.external import popen
    from sdctr.runtime import events
    from sdctr.runtime.logs import parse_time
    from sdctr.state import all_specs

    filters = parse_filters(args.filter or [], events.FILTERS)
    since = parse_time("--since", args.since) if args.since else None
    until = parse_time("--until", args.until) if args.until else None
    paths = paths_of(args)
    known = {s.unit: (s.id, s.name, s.image) for s in all_specs(paths)}
    follow = until is None or until > time.time()
    with popen(events.journalctl_argv(since, until, follow)) as proc:
        assert proc.stdout is not None
        lines = (raw.decode(errors="replace") for raw in proc.stdout)
        try:
            for event in events.parse(events.entries(lines), known):
                if until is not None and event["timeNano"] > until * 1e9:
                    break
                if not events.matches(event, filters):
                    continue
                if args.format == "json" or (args.format or "").strip() == "{{json .}}":
                    print(json.dumps(event), flush=True)
                elif args.format:
                    from sdctr.cli.output import render_format

                    print(render_format(args.format, event), flush=True)
                else:
                    print(events.text(event), flush=True)
        except (KeyboardInterrupt, BrokenPipeError):
            pass
        finally:
            proc.terminate()
    return 0
