"""What each command does, given its parsed arguments. Parsing lives in cli.py; the lifecycle in
containers.py; this module turns one into the other and prints what Docker would print."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from sdctr import spec as specs
from sdctr.image.progress import human_size
from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.runtime import lifecycle as containers
from sdctr.spec import ContainerSpec
from sdctr.state import find

TYPE_CHECKING = False  # typing costs ~3 ms to import, and run needs none of it
if TYPE_CHECKING:
    from typing import Any


def paths_of(args: argparse.Namespace) -> Paths:
    return Paths.from_root(args.root)


def systemd_of(args: argparse.Namespace) -> tuple[Any, Any]:
    from sdctr.systemd.manager import Systemd

    sd = Systemd()
    return sd, sd.host(force_unit_file=args.unit_file_mode)


# --- run ---------------------------------------------------------------------------------------

def build_spec(args: argparse.Namespace, paths: Paths) -> tuple[ContainerSpec, Any]:
    """Everything the user typed, checked, before anything is created; and the image."""

    resources = specs.Resources(
        cpu_shares=specs.parse_cpu_shares(args.cpu_shares) if args.cpu_shares else None,
        memory=specs.parse_memory(args.memory) if args.memory else None,
        cpus=specs.parse_cpus(args.cpus) if args.cpus else None,
        pids_limit=(specs.parse_pids_limit(args.pids_limit) if args.pids_limit
                    else specs.DEFAULT_PIDS_LIMIT),
    )
    mounts = tuple(specs.parse_mount(v) for v in args.volume)  # a missing source: made at start
    restart = specs.parse_restart(args.restart)
    network = specs.parse_network(args.network)
    caps = specs.resolve_capabilities(args.cap_add, args.cap_drop)
    if args.rm and restart is not specs.RestartPolicy.NO:
        raise SdctrError("--rm and --restart cannot be combined: a restarting container is never removed")
    env_from_user = [e for f in args.env_file for e in specs.read_env_file(f, os.environ)]
    env_from_user += specs.parse_env(args.env, os.environ)
    name = specs.check_name(args.name) if args.name else ""  # picked when the record is saved

    image = image_for_run(args, paths)
    cfg = image.config
    entrypoint = [args.entrypoint] if args.entrypoint is not None else list(cfg.entrypoint or [])
    command = entrypoint + (list(args.command) if args.command else
                            ([] if args.entrypoint is not None else list(cfg.cmd or [])))
    if not [c for c in command if c]:
        raise SdctrError(f"no command specified for {args.image}",
                         hint=f"give one: sdctr run {args.image} sh")
    spec = ContainerSpec(
        id=containers.new_id(), name=name, image=image.repo_tags[0] if image.repo_tags else args.image,
        image_id=image.id, command=tuple(command),
        env=specs.merge_env(cfg.env or (), env_from_user),
        workdir=args.workdir or cfg.workdir or "/", user=args.user or cfg.user or "",
        hostname=args.hostname or "", mounts=mounts, read_only=args.read_only, capabilities=caps,
        resources=resources, restart=restart, network=network, interactive=args.interactive,
        tty=args.tty, attached=not args.detach, remove=args.rm, ephemeral=args.ephemeral,
        created=time.time(),
    )
    return spec, image



def image_for_run(args: argparse.Namespace, paths: Paths) -> Any:
    """The image `run` and `create` use, pulled first as --pull says (progress on stderr, as
    Docker shows it, so that stdout stays the container's)."""
    from sdctr.image import store as images

    if args.pull != "always":
        try:
            return images.resolve(paths, args.image)
        except images.NoSuchImage:
            if args.pull == "never":
                raise
            print(f"Unable to find image '{images.parse_reference(args.image).key}' locally",
                  file=sys.stderr, flush=True)
    from sdctr.image import progress, registry

    with progress.view(sys.stderr) as show:
        return registry.pull(paths, args.image, platform=args.platform, progress=show)


def cmd_run(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    spec, image = build_spec(args, paths)
    sd, host = systemd_of(args)
    if args.detach:
        containers.run(paths, spec, image, sd, host)
        print(spec.id)
        return 0
    from sdctr.cli import attach

    return attach.run_attached(paths, spec, image, sd, host)


def cmd_create(args: argparse.Namespace) -> int:
    paths = paths_of(args)
    spec, image = build_spec(args, paths)
    print(containers.create(paths, spec, image).id)
    return 0


# --- lifecycle of existing containers -----------------------------------------------------------

def for_each(args: argparse.Namespace, action: Any) -> int:
    """Docker's multi-container verbs: act on each, report each failure, 1 if any failed."""
    paths = paths_of(args)
    sd, host = systemd_of(args)
    failed = 0
    for ref in args.containers:
        try:
            action(paths, sd, host, find(paths, ref))
            print(ref)
        except SdctrError as e:
            print(f"sdctr: error: {e}", file=sys.stderr)
            failed = 1
    return failed


def cmd_start(args: argparse.Namespace) -> int:
    def start(paths: Paths, sd: Any, host: Any, spec: ContainerSpec) -> None:
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
    return for_each(args, lambda paths, sd, host, spec: containers.stop(sd, spec, args.time))


def cmd_restart(args: argparse.Namespace) -> int:
    def restart(paths: Paths, sd: Any, host: Any, spec: ContainerSpec) -> None:
        containers.stop(sd, spec, args.time)
        containers.start(paths, _persist_detached(paths, spec), sd, host)
    return for_each(args, restart)


def cmd_kill(args: argparse.Namespace) -> int:
    signum = parse_signal(args.signal)
    return for_each(args, lambda paths, sd, host, spec: containers.kill(sd, spec, signum))


def parse_signal(value: str) -> int:
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
        spec = find(paths, ref)
        print(containers.wait_exit(paths, spec, sd, attached=False, poll=0.1))
    return 0


# --- looking at containers ---------------------------------------------------------------------

def cmd_ps(args: argparse.Namespace) -> int:
    from sdctr.state import read_status

    paths = paths_of(args)
    sd, _ = systemd_of(args)
    rows: list[dict[str, Any]] = []
    for spec, active in containers.all_with_state(paths, sd):
        if not args.all and active not in containers.RUNNING_STATES:
            continue
        status = read_status(paths, spec.id)
        rows.append({"ID": spec.short_id, "Image": spec.image, "Command": " ".join(spec.command),
                     "CreatedAt": spec.created, "Status": containers.ps_status(spec, active, status),
                     "Names": spec.name, "State": "running" if active in containers.RUNNING_STATES
                     else ("exited" if status.get("finished_at") else "created"),
                     "ExitCode": status.get("exit_code"), "Unit": spec.unit})
    if args.quiet:
        for r in rows:
            print(r["ID"])
    elif args.format == "json":
        for r in rows:
            print(json.dumps(r))
    else:
        table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"],
              [[r["ID"], r["Image"], _clip(r["Command"], 22),
                containers.human_duration(time.time() - r["CreatedAt"]) + " ago", r["Status"],
                r["Names"]] for r in rows])
    return 0


def _clip(text: str, width: int) -> str:
    return json.dumps(text if len(text) <= width else text[: width - 1] + "…", ensure_ascii=False)


def table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header, *rows]:
        print("   ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def cmd_inspect(args: argparse.Namespace) -> int:
    """Containers by name or id, and (as Docker) images where no container has that name."""
    from sdctr.state import NoSuchContainer

    paths = paths_of(args)
    sd = None
    docs = []
    for ref in args.containers:
        spec = None
        if args.type != "image":
            try:
                spec = find(paths, ref)
            except NoSuchContainer:
                if args.type == "container":
                    raise
        if spec is None:
            docs.append(_image_doc(paths, ref))
            continue
        sd = sd or systemd_of(args)[0]
        docs.append(containers.describe(paths, spec, sd.unit_state(spec.unit)))
    print_docs(docs, args.format)
    return 0


def _image_doc(paths: Paths, ref: str) -> dict[str, Any]:
    from sdctr.image import store as images

    try:
        return images.inspect(paths, images.resolve(paths, ref))
    except images.NoSuchImage:
        raise SdctrError(f"no such object: {ref}",
                         hint="neither a container nor an image has that name or id") from None


def print_docs(docs: list[dict[str, Any]], fmt: str | None) -> None:
    if fmt:
        for d in docs:
            print(render_format(fmt, d))
    else:
        print(json.dumps(docs, indent=4))


def render_format(fmt: str, doc: dict[str, Any]) -> str:
    """The common subset of Docker's Go templates: {{.A.B}} and {{json .A}}."""
    import re

    def lookup(path: str) -> Any:
        value: Any = doc
        for part in path.strip(".").split("."):
            if part:
                value = value[part]
        return value

    def repl(m: re.Match[str]) -> str:
        expr = m.group(1).strip()
        if expr.startswith("json "):
            return json.dumps(lookup(expr[5:].strip()))
        return go_text(lookup(expr))

    try:
        return re.sub(r"\{\{(.*?)\}\}", repl, fmt)
    except (KeyError, TypeError) as e:
        raise SdctrError(f"--format {fmt!r}: no field {e}") from None


def go_text(value: Any) -> str:
    """A value as Go's templates print it: [a b], map[k:v], true, <nil>."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "<nil>"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_text(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


def cmd_logs(args: argparse.Namespace) -> int:
    from sdctr.runtime import logs

    paths = paths_of(args)
    spec = find(paths, args.container)
    return logs.show(spec, follow=args.follow, tail=args.tail, since=args.since,
                     timestamps=args.timestamps)


def cmd_top(args: argparse.Namespace) -> int:
    from sdctr.external import run

    paths = paths_of(args)
    sd, _ = systemd_of(args)
    spec = find(paths, args.container)
    pids = containers.pids_in(containers.running_unit(sd, spec))
    r = run(["ps", "-f", "-p", ",".join(str(p) for p in pids)], check=False)
    print(r.stdout, end="")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from sdctr.cli import stats

    paths = paths_of(args)
    sd, _ = systemd_of(args)
    chosen = [find(paths, c) for c in args.containers] or [
        s for s, active in containers.all_with_state(paths, sd) if active in containers.RUNNING_STATES]
    return stats.show(sd, chosen, stream=not args.no_stream)


def cmd_exec(args: argparse.Namespace) -> int:
    from sdctr.init import enter

    paths = paths_of(args)
    sd, _ = systemd_of(args)
    spec = find(paths, args.container)
    unit = containers.running_unit(sd, spec)
    return enter.exec_in(spec, int(unit["MainPID"]), unit, list(args.command),
                         env=specs.parse_env(args.env, os.environ), workdir=args.workdir,
                         user=args.user, tty=args.tty, interactive=args.interactive)


# --- images --------------------------------------------------------------------------------------

def cmd_import(args: argparse.Namespace) -> int:
    from sdctr.image import store as images

    image = images.import_tarball(paths_of(args), args.source, args.reference,
                                  changes=images.parse_changes(args.change) if args.change else None)
    print(f"sha256:{image.id}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from sdctr.image import progress, registry

    with progress.view(sys.stdout, quiet=args.quiet) as show:
        image = registry.pull(paths_of(args), args.reference, platform=args.platform, progress=show)
    if args.quiet:
        print(f"sha256:{image.id}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from sdctr.image import search

    results = search.search(paths_of(args), args.term, limit=args.limit)
    if args.format == "json":
        for r in results:
            print(json.dumps(r.as_json()))
    else:
        table(search.HEADER, [r.row(truncate=not args.no_trunc) for r in results])
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    from sdctr.image import auth, registry

    paths, domain = paths_of(args), auth.registry_domain(args.server or "docker.io")
    credentials = auth.ask(domain, args.username, args.password, args.password_stdin)
    registry.verify_login(paths, domain, credentials)
    auth.store(auth.auth_file(paths), domain, *credentials)
    print("Login Succeeded")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from sdctr.image import auth

    paths, domain = paths_of(args), auth.registry_domain(args.server or "docker.io")
    if not auth.remove(auth.auth_file(paths), domain):
        raise SdctrError(f"not logged in to {domain}")
    print(f"Removed login credentials for {domain}")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    from sdctr.image import store as images

    rows = []
    for image in images.list_images(paths_of(args)):
        for tag in image.repo_tags or ("<none>:<none>",):
            repo, _, t = tag.rpartition(":")
            rows.append([repo, t, image.id[:12], human_ago(image.created), human_size(image.size)])
    if args.quiet:
        for r in rows:
            print(r[2])
    else:
        table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows)
    return 0


def human_ago(iso: str, now: float | None = None) -> str:
    """An RFC 3339 time as Docker shows it: "3 hours ago" (go-units' HumanDuration)."""
    import datetime

    try:
        then = datetime.datetime.fromisoformat(_py39_isoformat(iso))
    except ValueError:
        return iso or "N/A"
    if then.tzinfo is None:
        then = then.replace(tzinfo=datetime.timezone.utc)
    return containers.human_duration((now if now is not None else time.time()) - then.timestamp()) + " ago"


def _py39_isoformat(iso: str) -> str:
    """What Python 3.9's fromisoformat reads: no "Z", at most microseconds."""
    import re

    iso = iso.strip().replace("Z", "+00:00")
    return re.sub(r"(\.\d{6})\d+", r"\1", iso)


def cmd_load(args: argparse.Namespace) -> int:
    from sdctr.image import archive

    for line in archive.load(paths_of(args), args.input):
        print(line)  # -q too: Docker's quiet only silences the progress
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    from sdctr.image import archive

    archive.save(paths_of(args), args.images, args.output)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from sdctr.image import archive
    from sdctr.image import store as images

    paths = paths_of(args)
    spec = find(paths, args.container)
    archive.export(paths, spec.id, images.resolve(paths, spec.image_id), args.output)
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    from sdctr.image import store as images

    images.tag(paths_of(args), args.source, args.target)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from sdctr.image import store as images

    paths = paths_of(args)
    image = images.resolve(paths, args.image)
    rows = []
    for i, step in enumerate(images.history(paths, image)):
        created_by = step.created_by
        if len(created_by) > 45 and not args.no_trunc:
            created_by = created_by[:44] + "…"
        rows.append([image.short_id if i == 0 else "<missing>", human_ago(step.created), created_by,
                     human_size(step.size), step.comment])
    table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows)
    return 0


def cmd_image_inspect(args: argparse.Namespace) -> int:
    from sdctr.image import store as images

    paths = paths_of(args)
    print_docs([images.inspect(paths, images.resolve(paths, ref)) for ref in args.images], args.format)
    return 0


def cmd_image_prune(args: argparse.Namespace) -> int:
    from sdctr.image import store as images
    from sdctr.state import all_specs

    if not args.force:
        which = "all images without at least one container" if args.all else "all dangling images"
        print(f"WARNING! This will remove {which}.\nAre you sure you want to continue? [y/N] ", end="",
              flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    paths = paths_of(args)
    lines, freed = images.prune(paths, {s.image_id for s in all_specs(paths)}, unused_too=args.all)
    if lines:
        print("Deleted Images:")
        for line in lines:
            kind, _, what = line.partition(": ")
            print(f"{kind.lower()}: {what}")
        print()
    print(f"Total reclaimed space: {human_size(freed, digits=4)}")  # units.HumanSize, as Docker
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    from sdctr.image import store as images
    from sdctr.state import all_specs

    paths = paths_of(args)
    for ref in args.images:
        image = images.resolve(paths, ref)
        users = [s.name for s in all_specs(paths) if s.image_id == image.id]
        if users and not args.force:
            raise SdctrError(f"image {ref} is used by container(s) {', '.join(users)}",
                             hint="remove them first, or use 'rmi -f'")
        for line in images.remove(paths, ref, force=args.force):
            print(line)
    return 0
