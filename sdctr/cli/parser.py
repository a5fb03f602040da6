"""Command line: verbs and flags as Docker spells them; no side effects of its own.

The flags of `run` and `create` come from sdctr.options' table (shared with the YAML keys of
declared containers); the verbs are the `cmd_*` functions of sdctr.cli.containers and
sdctr.cli.images, each handing what was parsed to the module downstream. Import cost matters here
(this is the hot path of ``sdctr run``), so a verb's module is imported when it runs, and the
verbs import what they alone need inside their own function.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from sdctr import __version__
from sdctr.log import SdctrError, set_debug
from sdctr.options import LIST, OPTIONS, SWITCH, UPDATABLE, WORDS

TYPE_CHECKING = False  # typing costs ~3 ms to import, and run needs none of it
if TYPE_CHECKING:
    from typing import Any


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage; Docker exits 125, so do we, with one line. Options are
    never matched by a prefix (`--pid host` is not `--pids-limit host`), as in Docker."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("allow_abbrev", False)
        super().__init__(*args, **kw)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise SdctrError(message, hint=f"see '{self.prog} --help'")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse would ask shutil for the terminal's width on every add_argument: its import
        # is ~3 ms of every `sdctr run`
        return argparse.HelpFormatter(self.prog, width=_terminal_width())


def _terminal_width() -> int:
    """What shutil.get_terminal_size() says: $COLUMNS, else the terminal's, else 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


# The verbs that start containers: for these, only their own parser is built (argparse takes
# ~8 ms to build every verb's, a twentieth of a whole `run --rm`).
_HOT_VERBS = {"run": "create and start a container as the unit ctr-<id>",
              "create": "create a container without starting it"}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:  # noqa: PLR0915 - a declaration
    """The whole command line; with `only` one of _HOT_VERBS, that verb's alone."""
    parser = _Parser(
        prog="sdctr",
        description="A daemonless container manager: every container is a systemd unit ctr-<id>.",
    )
    parser.add_argument("--version", action="version", version=f"sdctr version {__version__}")
    parser.add_argument("--debug", action="store_true", help="echo external commands, show tracebacks")
    parser.add_argument("--root", metavar="DIR",
                        help="state root instead of /var/lib/sdctr (also SDCTR_ROOT)")
    # Forces the unit-file path that systemd older than v236 needs, so tests cover it anywhere.
    parser.add_argument("--unit-file-mode", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)
    for verb, help_text in _HOT_VERBS.items():
        if only in (None, verb):
            _add_run(sub, verb, help_text)
    if only in _HOT_VERBS:
        return _describe(parser)
    for verb, help_text in (("start", "start stopped containers"), ("rm", "remove containers"),
                            ("stop", "stop containers (SIGTERM, then SIGKILL after -t seconds)"),
                            ("restart", "restart containers"), ("kill", "send a signal to containers"),
                            ("wait", "wait for containers to stop and print their exit codes"),
                            ("inspect", "show containers (or images) as JSON")):
        p = sub.add_parser(verb, help=help_text)
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
        p.set_defaults(handler=_handler(f"containers.cmd_{verb}"))
    for verb in ("stop", "restart"):
        sub.choices[verb].add_argument("-t", "--time", type=int, default=None, metavar="SECONDS",
                                       help="seconds to wait before SIGKILL (default: the container's, 10)")
    sub.choices["kill"].add_argument("-s", "--signal", default="KILL", metavar="SIGNAL",
                                     help="a name or number: TERM, HUP, 9 (default: KILL)")
    sub.choices["rm"].add_argument("-f", "--force", action="store_true", help="kill a running one first")
    sub.choices["inspect"].add_argument("-f", "--format", help="a template such as '{{.State.Status}}'")
    sub.choices["inspect"].add_argument("--type", choices=["container", "image"],
                                        help="only this kind (default: a container, else an image)")

    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="stopped ones too")
    p.add_argument("-q", "--quiet", action="store_true", help="ids only")
    p.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE",
                   help="only these: name, id, status, label, ancestor, exited (repeat: a key's values "
                   "are alternatives)")
    p.add_argument("-n", "--last", type=int, metavar="N", help="the N newest, stopped ones too")
    p.add_argument("-l", "--latest", action="store_true", help="the newest, stopped or not")
    p.add_argument("-s", "--size", action="store_true", help="the writable layer's size")
    p.add_argument("--no-trunc", action="store_true", help="full ids and commands")
    p.add_argument("--format", default="table", help="table, json, or a template such as '{{.Names}}'")
    p.set_defaults(handler=_handler("containers.cmd_ps"))

    p = sub.add_parser("export", help="a container's file system as a tar archive")
    p.add_argument("-o", "--output", metavar="FILE", help="default: stdout")
    p.add_argument("container")
    p.set_defaults(handler=_handler("containers.cmd_export"))

    p = sub.add_parser("logs", help="a container's output, from the journal")
    p.add_argument("-f", "--follow", action="store_true", help="go on printing until the container ends")
    p.add_argument("-n", "--tail", metavar="N", help="the last N lines (or 'all')")
    p.add_argument("--since", metavar="TIME",
                   help="lines since TIME: 10m, 2h30m, 2026-01-02T10:00:00Z, Unix seconds")
    p.add_argument("--until", metavar="TIME", help="lines before TIME (the same forms)")
    p.add_argument("-t", "--timestamps", action="store_true", help="each line with its time (RFC 3339)")
    p.add_argument("container")
    p.set_defaults(handler=_handler("containers.cmd_logs"))

    p = sub.add_parser("attach", help="our terminal to a running container's (run -it/-dit), or its output")
    p.add_argument("--detach-keys", metavar="KEYS",
                   help="the keys that detach, leaving the container running (default: ctrl-p,ctrl-q)")
    p.add_argument("--no-stdin", action="store_true", help="show the output only, send nothing")
    p.add_argument("container")
    p.set_defaults(handler=_handler("terminal.cmd_attach"))

    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-d", "--detach", action="store_true",
                   help="return at once; the command runs on in the container, its output discarded")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open: ours, relayed")
    p.add_argument("-t", "--tty", action="store_true",
                   help="a pty of the container's own (TERM: ours, else xterm)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]",
                   help="set a variable (KEY alone: our value)")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE",
                   help="read variables from FILE, KEY=VALUE a line (-e wins)")
    p.add_argument("-w", "--workdir", metavar="DIR", help="where it runs (default: the container's)")
    p.add_argument("-u", "--user", metavar="USER[:GROUP]", help="name or id (default: the container's)")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND", help="the command, its arguments")
    p.set_defaults(handler=_handler("containers.cmd_exec"))

    for verb, help_text in (("top", "a container's processes"),):
        p = sub.add_parser(verb, help=help_text)
        p.add_argument("container")
        p.set_defaults(handler=_handler(f"containers.cmd_{verb}"))
    p = sub.add_parser("port", help="a container's published ports")
    p.add_argument("container")
    p.add_argument("port", nargs="?", metavar="PORT[/PROTO]")
    p.set_defaults(handler=_handler("networks.cmd_port"))
    network = sub.add_parser("network",
                             help="the networks (create, ls, inspect, rm, prune, connect, disconnect)")
    network_verbs = network.add_subparsers(dest="network_verb", metavar="COMMAND", required=True,
                                           parser_class=_Parser)
    p = network_verbs.add_parser("ls", help="list the networks")
    p.add_argument("-q", "--quiet", action="store_true", help="ids only")
    p.add_argument("--format", help="table, or a template such as '{{.Name}} {{.Driver}}'")
    p.set_defaults(handler=_handler("networks.cmd_network_ls"))
    p = network_verbs.add_parser("create", help="a user network: a bridge and a subnet of its own")
    p.add_argument("--subnet", action="append", default=[],
                   help="an IPv4 subnet (default: a free /16 from 10.90.0.0/16 up); with --ipv6, an "
                        "IPv6 one too (given twice)")
    p.add_argument("--ipv6", action="store_true",
                   help="IPv6 as well: an address per container from the IPv6 --subnet")
    p.add_argument("--gateway", help="the bridge's address (default: the subnet's first)")
    p.add_argument("-d", "--driver", choices=["bridge"], default="bridge", help="bridge, the only one")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=_handler("networks.cmd_network_create"))
    p = network_verbs.add_parser("rm", help="remove user networks no container is on")
    p.add_argument("networks", nargs="+", metavar="NETWORK")
    p.set_defaults(handler=_handler("networks.cmd_network_rm"))
    for verb, what in (("connect", "give a running container an interface on a network (eth1, ...)"),
                       ("disconnect", "take away what connect gave")):
        p = network_verbs.add_parser(verb, help=what)
        p.add_argument("network", metavar="NETWORK")
        p.add_argument("container", metavar="CONTAINER")
        p.set_defaults(handler=_handler(f"networks.cmd_network_{verb}"))
    p = network_verbs.add_parser("prune", help="remove every user network no container is on")
    p.add_argument("-f", "--force", action="store_true", help="do not ask")
    p.set_defaults(handler=_handler("networks.cmd_network_prune"))
    p = network_verbs.add_parser("inspect", help="a network's settings and its containers' addresses")
    p.add_argument("-f", "--format", help="a template such as '{{.Subnet}}'")
    p.add_argument("networks", nargs="+", metavar="NETWORK")
    p.set_defaults(handler=_handler("networks.cmd_network_inspect"))
    p = sub.add_parser("stats", help="CPU, memory, network and block I/O, and pids of running containers")
    p.add_argument("--no-stream", action="store_true", help="print once, do not refresh")
    p.add_argument("--format", help="json, or a template such as 'table {{.Name}}\\t{{.CPUPerc}}'")
    p.add_argument("containers", nargs="*", metavar="CONTAINER", help="default: every running one")
    p.set_defaults(handler=_handler("containers.cmd_stats"))

    system = sub.add_parser("system", help="the host's sdctr state (gc)")
    system_verbs = system.add_subparsers(dest="system_verb", metavar="COMMAND", required=True,
                                         parser_class=_Parser)
    p = system_verbs.add_parser("gc", help="remove what a crash left: veths, leases, rules, namespaces")
    p.set_defaults(handler=_handler("containers.cmd_system_gc"))
    p = system_verbs.add_parser("check", help="report what a crash left inconsistent (records, units, "
                                "mounts, snapshots, store)")
    p.add_argument("--repair", action="store_true", help="repair what can be without losing data")
    p.set_defaults(handler=_handler("system.cmd_system_check"))
    p = system_verbs.add_parser("autostart", help="start the containers whose --restart brings them back "
                                "after a reboot (sdctr-restart.service runs it at boot)")
    p.set_defaults(handler=_handler("boot.cmd_system_autostart"))
    p = system_verbs.add_parser("setup", help="make what containers need of the host: storage, the default "
                                "bridge and its NAT table (sdctr-setup.service runs it at boot)")
    p.add_argument("--no-network", action="store_true", help="storage only: no bridge, no rules")
    p.set_defaults(handler=_handler("boot.cmd_system_setup"))

    p = sub.add_parser("generate", help="print what systemd needs for a container (a unit file)")
    generate_verbs = p.add_subparsers(dest="generate_verb", metavar="COMMAND", required=True,
                                      parser_class=_Parser)
    p = generate_verbs.add_parser("systemd", help="the unit of a declared container (NAME, or its YAML "
                                  "FILE) or of a container")
    p.add_argument("-f", "--files", action="store_true",
                   help="write the unit and any file it needs (a devicemapper container's rootfs "
                   "drop-in) into the current directory, as a unit directory holds them, and print "
                   "their paths")
    p.add_argument("target", metavar="CONTAINER|FILE")
    p.set_defaults(handler=_handler("generate.cmd_generate_systemd"))

    _add_volume_verbs(sub)
    _add_manage_verbs(sub, system_verbs)
    p = sub.add_parser("storage", help="the storage driver (status: the thin pool's data and metadata use)")
    storage_verbs = p.add_subparsers(dest="storage_verb", metavar="COMMAND", required=True,
                                     parser_class=_Parser)
    p = storage_verbs.add_parser("status", help="the driver new containers get and why, and its space")
    p.add_argument("--format", choices=["table", "json"], default="table", help="table, or json")
    p.set_defaults(handler=_handler("manage.cmd_storage_status"))
    p = storage_verbs.add_parser("setup", help="make an LVM thin pool for the devicemapper driver and name "
                                 "it in sdctr.yaml (as docker-storage-setup did)")
    p.add_argument("--lvm", required=True, metavar="VG", help="the volume group to make the pool in")
    p.add_argument("--size", default="40%FREE", metavar="SIZE",  # docker-storage-setup's DATA_SIZE
                   help="the pool's data: a size (20G) or a share of the group (40%%FREE, 90%%VG); "
                        "default 40%%FREE")
    p.add_argument("--name", default="sdctr-pool", metavar="LV",
                   help="the pool's LV name (default sdctr-pool)")
    p.set_defaults(handler=_handler("storage.cmd_storage_setup"))
    p = sub.add_parser("update", help="change the limits of containers, running ones at once (as Docker's)")
    for option in OPTIONS:  # the table's flags and help for the limits update changes
        if option.dest in UPDATABLE:
            p.add_argument(*option.flags, dest=option.dest, metavar=option.metavar, help=option.help,
                           action="append" if option.kind == LIST else "store")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(handler=_handler("update.cmd_update"))

    p = sub.add_parser("healthcheck", help="run a container's health check")
    health_verbs = p.add_subparsers(dest="healthcheck_verb", metavar="COMMAND", required=True,
                                    parser_class=_Parser)
    p = health_verbs.add_parser("run", help="run the health check now: prints healthy or unhealthy "
                                "(exit status 0 or 1), and records it as the timer's checks")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(handler=_handler("health.cmd_healthcheck_run"))

    _add_image_verbs(sub, group=False)
    image_group = sub.add_parser("image", help="manage images (ls, pull, rm, tag, inspect, prune, ...)")
    _add_image_verbs(image_group.add_subparsers(dest="image_verb", metavar="COMMAND", required=True,
                                                parser_class=_Parser), group=True)
    _add_registry_verbs(sub)
    # `init` and `hook`, what the unit runs, never reach this parser (sdctr.main.unit_command)
    return _describe(parser)


def _describe(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Each verb's --help opens with the line `sdctr --help` lists it with (its description,
    unless it has one of its own); tests/unit/test_cli_help.py checks every verb has one."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for listed in action._choices_actions:
                sub = action.choices[listed.dest]
                if sub.description is None and listed.help:  # (an alias shares its parser)
                    sub.description = listed.help
            for sub in {id(p): p for p in action.choices.values()}.values():
                _describe(sub)
    return parser


def _add_volume_verbs(sub: argparse._SubParsersAction[_Parser]) -> None:
    group = sub.add_parser("volume", help="manage named volumes (create, ls, inspect, rm, prune)")
    verbs = group.add_subparsers(dest="volume_verb", metavar="COMMAND", required=True, parser_class=_Parser)
    p = verbs.add_parser("create", help="make a volume (a random name if none is given)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="a label for it")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.set_defaults(handler=_handler("volumes.cmd_volume_create"))
    p = verbs.add_parser("ls", aliases=["list"], help="list the volumes")
    p.add_argument("-q", "--quiet", action="store_true", help="names only")
    p.add_argument("--format", help="table, or a template such as '{{.Name}} {{.Mountpoint}}'")
    p.set_defaults(handler=_handler("volumes.cmd_volume_ls"))
    p = verbs.add_parser("inspect", help="volumes' details as JSON")
    p.add_argument("-f", "--format", help="a template such as '{{.Mountpoint}}'")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(handler=_handler("volumes.cmd_volume_inspect"))
    p = verbs.add_parser("rm", aliases=["remove"], help="remove volumes no container uses")
    p.add_argument("-f", "--force", action="store_true", help="accepted as Docker's; a volume in use stays")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(handler=_handler("volumes.cmd_volume_rm"))
    p = verbs.add_parser("prune", help="remove every volume no container uses")
    p.add_argument("-f", "--force", action="store_true", help="do not ask (sdctr never asks)")
    p.set_defaults(handler=_handler("volumes.cmd_volume_prune"))


def _add_manage_verbs(sub: argparse._SubParsersAction[_Parser],
                      system_verbs: argparse._SubParsersAction[_Parser]) -> None:
    """pause, unpause, rename, top, diff, cp, commit, container prune, system df/prune, info and
    version: Docker's flags, handled by sdctr.cli.manage."""
    def verb(where: argparse._SubParsersAction[_Parser], name: str, help_text: str,
             handler: str) -> argparse.ArgumentParser:
        p = where.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=_handler(f"manage.{handler}"))
        return p

    for name, help_text in (("pause", "freeze every process of containers (the kernel's freezer)"),
                            ("unpause", "thaw paused containers")):
        verb(sub, name, help_text, f"cmd_{name}").add_argument("containers", nargs="+", metavar="CONTAINER")
    p = verb(sub, "rename", "give a container another name", "cmd_rename")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")
    p = verb(sub, "cp", "copy files between a container and the host (- for a tar stream)", "cmd_cp")
    p.add_argument("-a", "--archive", action="store_true", help="keep the files' uid and gid")
    p.add_argument("-L", "--follow-link", action="store_true", help="follow a symlink given as SRC")
    p.add_argument("src", metavar="SRC", help="CONTAINER:PATH, a host path, or - (a tar on stdin)")
    p.add_argument("dest", metavar="DEST", help="CONTAINER:PATH, a host path, or - (a tar on stdout)")
    p = sub.choices["top"]  # ps's own options after the container, as Docker passes them
    p.add_argument("ps_options", nargs=argparse.REMAINDER, metavar="PS_OPTIONS", help="default: -ef")
    p.set_defaults(handler=_handler("manage.cmd_top"))
    p = verb(sub, "diff", "the files a container added (A), changed (C) and deleted (D)", "cmd_diff")
    p.add_argument("container", metavar="CONTAINER")
    p = verb(sub, "commit", "a new image from a container's changes", "cmd_commit")
    p.add_argument("-a", "--author", help="the image's author, e.g. 'Jane <jane@example.com>'")
    p.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                   help="a Dockerfile instruction for the image config, e.g. 'CMD [\"sh\"]'")
    p.add_argument("-m", "--message", help="the commit message")
    p.add_argument("-p", "--pause", action=argparse.BooleanOptionalAction, default=True,
                   help="pause the container while its layer is read (default: yes; --no-pause "
                   "reads it live)")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")

    def prune_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("-f", "--force", action="store_true", help="do not ask")
        p.add_argument("--filter", action="append", metavar="KEY=VALUE",
                       help="only containers with label=KEY[=VALUE] (label!=... without), "
                       "until=TIME (10m, RFC 3339, Unix seconds)")

    group = sub.add_parser("container", help="manage containers (prune)", description="manage containers")
    container_verbs = group.add_subparsers(dest="container_verb", metavar="COMMAND", required=True,
                                           parser_class=_Parser)
    prune_flags(verb(container_verbs, "prune", "remove every stopped container", "cmd_container_prune"))
    p = verb(system_verbs, "prune", "remove stopped containers and dangling (-a: unused) images",
             "cmd_system_prune")
    p.add_argument("-a", "--all", action="store_true", help="every image no container uses, not only "
                   "dangling ones")
    prune_flags(p)
    p = verb(system_verbs, "df", "the disk space images and containers use", "cmd_system_df")
    p.add_argument("--format", choices=["table", "json"], default="table", help="table (default) or json")
    for where in (sub, system_verbs):
        p = verb(where, "info", "this host as sdctr sees it (systemd, cgroups, storage, counts)", "cmd_info")
        p.add_argument("-f", "--format", help="json, or a template such as '{{.CgroupVersion}}'")
    p = verb(sub, "version", "the versions of sdctr and of the host's systemd", "cmd_version")
    p.add_argument("-f", "--format", help="json, or a template such as '{{.Client.Version}}'")
    p = verb(sub, "events", "what happens to containers (start, die, stop, pause, ...), from the "
             "journal", "cmd_events")
    p.add_argument("--since", metavar="TIME", help="from TIME: 10m, 2h30m, RFC 3339, Unix seconds")
    p.add_argument("--until", metavar="TIME", help="until TIME (the same forms); default: follow")
    p.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE",
                   help="only these: container, event, image, type (repeat: a key's values are "
                   "alternatives)")
    p.add_argument("--format", help="json, or a template such as '{{.Action}} {{.Actor.ID}}'")


def _add_registry_verbs(sub: argparse._SubParsersAction[_Parser]) -> None:
    """The verbs that talk to a registry but touch no image: top level only, as in Docker."""
    p = sub.add_parser("search", help="search Docker Hub, or REGISTRY/TERM a registry's catalog")
    p.add_argument("--limit", type=int, default=25, metavar="N", help="at most N results (default 25)")
    p.add_argument("--format", choices=["table", "json"], default="table", help="table (default) or json")
    p.add_argument("--no-trunc", action="store_true", help="whole descriptions")
    p.add_argument("term", metavar="[REGISTRY/]TERM")
    p.set_defaults(handler=_handler("images.cmd_search"))
    p = sub.add_parser("login", help="check and store credentials for a registry (Docker Hub by default)")
    p.add_argument("-u", "--username", help="default: asked for on a terminal")
    p.add_argument("-p", "--password", help="insecure: use --password-stdin")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("server", nargs="?", metavar="REGISTRY")
    p.set_defaults(handler=_handler("images.cmd_login"))
    p = sub.add_parser("logout", help="remove the stored credentials for a registry")
    p.add_argument("server", nargs="?", metavar="REGISTRY")
    p.set_defaults(handler=_handler("images.cmd_logout"))


def _add_image_verbs(sub: argparse._SubParsersAction[_Parser], *, group: bool) -> None:
    """Docker's image verbs, at the top level (`pull`, `images`, `rmi`) and under `image`
    (`image pull`, `image ls`, `image rm`), where `inspect` and `prune` live too."""
    def verb(top: str, in_group: str, help_text: str, handler: str, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(in_group if group else top, help=help_text, **kw)
        p.set_defaults(handler=_handler(f"images.{handler}"))
        return p

    p = verb("import", "import", "make an image from a root file system tarball (- for stdin)", "cmd_import")
    p.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                   help="a Dockerfile instruction for the image config, e.g. 'CMD [\"sh\"]'")
    p.add_argument("source", metavar="FILE|-")
    p.add_argument("reference", metavar="NAME[:TAG]")
    p = verb("pull", "pull", "pull an image from a registry (Docker Hub by default)", "cmd_pull")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="default: this host's")
    p.add_argument("-q", "--quiet", action="store_true", help="print the image id only")
    p.add_argument("reference", metavar="NAME[:TAG|@DIGEST]")
    p = verb("images", "ls", "list images", "cmd_images", aliases=["list"] if group else [])
    p.add_argument("-q", "--quiet", action="store_true", help="image ids only")
    p.add_argument("--format", help="table, json, or a template such as 'table {{.Repository}}\\t{{.ID}}'")
    p = verb("rmi", "rm", "remove images", "cmd_rmi")
    p.add_argument("-f", "--force", action="store_true", help="by id, an image with several tags; "
                   "one that containers use is untagged and kept")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p = verb("load", "load", "load images from a `docker save` or OCI archive", "cmd_load")
    p.add_argument("-i", "--input", metavar="FILE", help="the archive (default: stdin)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, only the loaded names")
    p = verb("save", "save", "save images to an archive (docker and OCI formats in one)", "cmd_save")
    p.add_argument("-o", "--output", metavar="FILE", help="default: stdout")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p = verb("tag", "tag", "give an image another name", "cmd_tag")
    p.add_argument("source", metavar="IMAGE")
    p.add_argument("target", metavar="NAME[:TAG]")
    p = verb("history", "history", "the steps that made an image", "cmd_history")
    p.add_argument("--no-trunc", action="store_true", help="whole ids and commands")
    p.add_argument("image", metavar="IMAGE")
    if group:
        p = verb("", "inspect", "show images as JSON", "cmd_image_inspect")
        p.add_argument("-f", "--format", help="a template such as '{{.Config.Cmd}}'")
        p.add_argument("images", nargs="+", metavar="IMAGE")
        p = verb("", "prune", "remove untagged images no container uses", "cmd_image_prune")
        p.add_argument("-a", "--all", action="store_true", help="every image no container uses")
        p.add_argument("-f", "--force", action="store_true", help="do not ask")


def _add_run(sub: argparse._SubParsersAction[_Parser], verb: str, help_text: str) -> None:
    """`run` or `create`: their flags and arguments are sdctr.options' table, in its order."""
    # -h is --hostname here, as in Docker, so help is --help only
    p = sub.add_parser(verb, help=help_text, add_help=False)
    p.add_argument("--help", action="help", help="show this help message and exit")
    for option in OPTIONS:
        if option.verb not in ("", verb):
            continue
        if not option.flags:  # IMAGE, then COMMAND: its words, however they look
            p.add_argument(option.dest, metavar=option.metavar,
                           nargs=argparse.REMAINDER if option.kind == WORDS else None)
            continue
        kw: dict[str, Any] = {"dest": option.dest, "help": option.help, "default": None}
        if option.kind == SWITCH:
            kw["action"] = "store_true"
        else:
            kw.update(metavar=option.metavar, choices=option.choices or None)
            if option.kind == LIST:
                kw["action"] = "append"
        p.add_argument(*option.flags, **kw)
    if verb == "create":
        p.set_defaults(detach=True)
    p.set_defaults(handler=_handler(f"containers.cmd_{verb}"))


EXIT_NO_SUCH_CONTAINER = 1


def _handler(name: str) -> Callable[[argparse.Namespace], int]:
    """`noun.cmd_verb`: the verb's module (sdctr.cli.containers, .images) is imported when it
    runs, so `sdctr --help` stays cheap."""
    noun, _, function = name.partition(".")

    def call(args: argparse.Namespace) -> int:
        import importlib

        from sdctr.state import NoSuchContainer

        try:
            return int(getattr(importlib.import_module(f"sdctr.cli.{noun}"), function)(args))
        except NoSuchContainer as e:
            # Docker's CLI exits 1 when the daemon answers "No such container", whatever the verb
            e.status = EXIT_NO_SUCH_CONTAINER
            raise
    return call


def run(argv: Sequence[str]) -> int:
    """Parse and dispatch; sdctr.main around it turns errors into one line and a status."""
    parser = build_parser(only=verb_of(argv))
    args = parser.parse_args(argv)
    set_debug(args.debug)
    if args.verb is None:
        parser.print_help()
        return 0
    return int(args.handler(args) or 0)


def verb_of(argv: Sequence[str]) -> str | None:
    """The first word that is not a global option or --root's value."""
    words = iter(argv)
    for word in words:
        if word == "--root":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None
