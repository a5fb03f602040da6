"""`sdctr volume create/ls/inspect/rm/prune`, as Docker's (sdctr.runtime.volumes)."""

from __future__ import annotations

import argparse
import os

from sdctr.cli.containers import paths_of
from sdctr.cli.output import print_docs, table
from sdctr.log import SdctrError, error
from sdctr.runtime import volumes


def cmd_volume_create(args: argparse.Namespace) -> int:
    from sdctr.options import parse_label

    name = args.name or os.urandom(32).hex()  # Docker's anonymous volume: 64 hex digits
    labels = tuple(parse_label("--label", label) for label in args.label)
    print(volumes.create(paths_of(args), name, labels).name)
    return 0


def cmd_volume_ls(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    found = volumes.all_volumes(paths)
    if args.quiet:
        for v in found:
            print(v.name)
    elif args.format and args.format != "table":
        from sdctr.cli.template import VOLUME_HEADERS, render_all

        for line in render_all(args.format, [v.describe(paths) for v in found], VOLUME_HEADERS):
            print(line)
    else:
        table(["DRIVER", "VOLUME NAME"], [["local", v.name] for v in found])
    return 0


def cmd_volume_inspect(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    docs, failed = [], 0
    for name in args.names:
        try:
            docs.append(volumes.get(paths, name).describe(paths))
        except SdctrError as e:
            error(str(e))
            failed = 1
    print_docs(docs, args.format)
    return failed


def cmd_volume_rm(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    failed = 0
    for name in args.names:
        try:
            volumes.remove(paths, name, args.force)
            print(name)
        except SdctrError as e:
            error(str(e), e.hint)
            failed = 1
    return failed


def cmd_volume_prune(args: argparse.Namespace) -> int:
    removed = volumes.prune(paths_of(args))
    print("Deleted Volumes:")
    for name in removed:
        print(name)
    return 0
