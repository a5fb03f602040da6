"""The verbs that manage containers beyond their lifecycle, as Docker spells and prints them:
pause, unpause, rename, top, diff, cp, commit, container prune, system df, system prune, info,
version. The work is sdctr.runtime's (pause, changes, copy); this module prints.

Exit statuses as Docker's: 1 when a container is missing (sdctr.cli.parser) or a multi-container
verb failed for one of them, 125 for sdctr's own errors.
"""

from __future__ import annotations

import argparse
import os
import sys

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
    return for_each(args, freeze)


def cmd_unpause(args: argparse.Namespace) -> int:
    from sdctr.runtime import lifecycle, pause

    def thaw(paths: Paths, sd: Systemd, host: Host, spec: ContainerSpec) -> None:
        unit = lifecycle.running_unit(sd, spec)
        cg = unit.get("ControlGroup") or pause.control_group(spec)
        if not pause.is_paused(cg):
            raise SdctrError(f"container {spec.name} is not paused")
        pause.thaw(sd, host, spec, cg)
    return for_each(args, thaw)


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
        save_spec(paths, spec.replace(name=new))
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
    sd, _ = systemd_of(args)
    spec = find(paths, src_ref or dest_ref or "")
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
        parts = copy.resolve_in_root(root, src)
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
            copy.copy(pfd, name, dfd, dname, dest, owner=args.archive, as_name=shown)
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
    sd, _ = systemd_of(args)
    spec = find(paths, args.container)
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
    print(f"sha256:{image.id}")
    return 0
