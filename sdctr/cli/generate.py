"""`sdctr generate systemd CONTAINER|FILE`: the unit a declared container gets from the generator
(given its name or its YAML file, which need not be in /etc/sdctr/containers yet), or the unit
an existing container runs as (its transient unit's properties, as a file)."""

from __future__ import annotations

import argparse
import os

from sdctr.log import SdctrError
from sdctr.options import declared_dir, read_declared
from sdctr.paths import Paths


def cmd_generate_systemd(args: argparse.Namespace) -> int:
    from sdctr.systemd.generator import Renderer

    target = args.target
    declared = os.path.join(declared_dir(), f"{target}.yaml")
    if target.endswith(".yaml") or os.sep in target:
        source = os.path.abspath(target)
    elif os.path.exists(declared):
        source = declared
    else:
        print(_container_unit(Paths.from_root(args.root), target), end="")
        return 0
    renderer = Renderer(root=str(Paths.from_root(args.root).root))
    print(renderer.unit(read_declared(source), source), end="")
    return 0


def _container_unit(paths: Paths, ref: str) -> str:
    from sdctr.runtime.lifecycle import unit_props
    from sdctr.state import NoSuchContainer, find
    from sdctr.systemd.generator import file_host
    from sdctr.systemd.properties import unit_file

    try:
        spec = find(paths, ref)
    except NoSuchContainer:
        raise SdctrError(f"no such container or declared container: {ref}",
                         hint=f"declared containers are {declared_dir()}/NAME.yaml") from None
    return unit_file(unit_props(paths, spec, file_host())) + "\n[Install]\nWantedBy=multi-user.target\n"
