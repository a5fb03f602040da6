"""The image and registry verbs, given their parsed arguments: import, pull, search, login,
logout, images, load, save, tag, history, image inspect, image prune, rmi. Flags are
sdctr.cli.parser's, the work sdctr.image's; this module prints what Docker would print."""

from __future__ import annotations

import json
import sys

from sdctr.cli.output import human_ago, print_docs, table
from sdctr.image.progress import human_size
from sdctr.log import SdctrError
from sdctr.paths import Paths

TYPE_CHECKING = False  # typing costs ~3 ms to import
if TYPE_CHECKING:
    import argparse


def paths_of(args: argparse.Namespace) -> Paths:
    return Paths.from_root(args.root)


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

    rows, docs = [], []
    for image in images.list_images(paths_of(args)):
        for tag in image.repo_tags or ("<none>:<none>",):
            repo, _, t = tag.rpartition(":")
            rows.append([repo, t, image.id[:12], human_ago(image.created), human_size(image.size)])
            docs.append({"Repository": repo, "Tag": t, "ID": image.id[:12], "CreatedSince": rows[-1][3],
                         "CreatedAt": image.created, "Size": rows[-1][4], "Digest": "<none>"})
    if args.format and args.format != "table":
        from sdctr.cli.template import IMAGE_HEADERS, render_all

        for line in (json.dumps(d) for d in docs) if args.format == "json" else \
                render_all(args.format, docs, IMAGE_HEADERS):
            print(line)
        return 0
    if args.quiet:
        for r in rows:
            print(r[2])
    else:
        table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from sdctr.image import archive

    for line in archive.load(paths_of(args), args.input):
        print(line)  # -q too: Docker's quiet only silences the progress
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    from sdctr.image import archive

    archive.save(paths_of(args), args.images, args.output)
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
    print_deleted_images(lines)
    print(f"Total reclaimed space: {human_size(freed, digits=4)}")  # units.HumanSize, as Docker
    return 0


def print_deleted_images(lines: list[str]) -> None:
    """image prune's and system prune's list, as Docker prints it ("untagged: ...", "deleted: ...")."""
    if lines:
        print("Deleted Images:")
        for line in lines:
            kind, _, what = line.partition(": ")
            print(f"{kind.lower()}: {what}")
        print()


def cmd_rmi(args: argparse.Namespace) -> int:
    from sdctr.image import store as images

    paths = paths_of(args)
    for ref in args.images:  # an image in use is refused (or, forced, untagged) under the lock
        for line in images.remove(paths, ref, force=args.force):
            print(line)
    return 0
