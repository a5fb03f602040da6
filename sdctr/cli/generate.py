"""`sdctr generate systemd [--files] CONTAINER|FILE`: the unit a declared container gets from the
generator (given its name or its YAML file, which need not be in /etc/sdctr/containers yet), or
the unit an existing container runs as (its transient unit's properties, as a file).

A declared container on devicemapper needs a second file, a drop-in of its rootfs unit
(sdctr.systemd.generator.Renderer.files) that makes its record before that unit activates the
snapshot. The unit alone goes to stdout, so that `> ctr-NAME.service` stays one valid unit, and a
note names the drop-in; `--files` writes every file into the current directory (Podman's flag),
laid out as a unit directory wants them: run it in /etc/systemd/system to install them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sdctr.log import SdctrError
from sdctr.options import declared_dir, read_declared
from sdctr.paths import Paths


def cmd_generate_systemd(args: argparse.Namespace) -> int:
    from sdctr.systemd.generator import Renderer

    paths = Paths.from_root(args.root)
    target = args.target
    declared = os.path.join(declared_dir(), f"{target}.yaml")
    if target.endswith(".yaml") or os.sep in target:
        source = os.path.abspath(target)
    elif os.path.exists(declared):
        source = declared
    else:
        return _emit(_container_unit(paths, target), target, args.files)
    renderer = Renderer(root=str(paths.root))
    return _emit(renderer.files(read_declared(source), source), target, args.files)


def _emit(files: dict[str, str], target: str, write: bool) -> int:
    """The first file (the container's unit) on stdout and a note on the others; or, with
    `write`, every file written below the current directory and its path printed."""
    if write:
        from sdctr.state import write_atomic

        for path, text in files.items():
            full = Path(path).absolute()
            full.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            write_atomic(full, text, mode=0o644)
            print(full)
        return 0
    unit, *others = files
    print(files[unit], end="")
    if others:
        print(f"sdctr: {unit} needs {' and '.join(others)} too (in the same unit directory): "
              f"`sdctr generate systemd --files {target}` writes them all", file=sys.stderr)
    return 0


def _container_unit(paths: Paths, ref: str) -> dict[str, str]:
    from sdctr.runtime.lifecycle import unit_props
    from sdctr.state import NoSuchContainer, find
    from sdctr.systemd.generator import file_host
    from sdctr.systemd.properties import unit_file

    try:
        spec = find(paths, ref)
    except NoSuchContainer:
        raise SdctrError(f"no such container or declared container: {ref}",
                         hint=f"declared containers are {declared_dir()}/NAME.yaml") from None
    unit = unit_file(unit_props(paths, spec, file_host()))
    return {spec.unit: unit + "\n[Install]\nWantedBy=multi-user.target\n"}
