"""The program's entry point, and its last line of defence: one line per error, a traceback only
with --debug, Docker's exit statuses.

What the unit runs (`[--root R] init ID`, `[--root R] hook STAGE ID`, up to three Python
processes per container start and stop) goes straight to its module: not past argparse, the
verbs or what they import, as every millisecond of interpreter start-up counts there.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from sdctr.log import EXIT_SDCTR, SdctrError, debugging, error

HOOK_STAGES = ("prestart", "stop", "poststop", "netup", "netdown", "declare", "declare-rootfs",
               "rootfs-up", "rootfs-down")


def entry() -> None:
    """The `sdctr` command: main(), then out without the interpreter's teardown, which is ~9 ms
    of every command (a hundred modules and libsystemd to unload) and, in the init, keeps
    systemd from seeing a short-lived container's end. By then every file of ours is closed and
    every thread joined; what is left in stdout and stderr is flushed here."""
    status = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that left, or a stream the command closed
            pass
    os._exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        command = unit_command(argv)
        if command is None:
            import signal

            from sdctr.cli import parser as cli

            # `kill` or a systemd stop ends a pull, load or export through its clean-up (temp
            # blobs, mounts), as Ctrl-C does; `run` forwards signals to the container instead
            signal.signal(signal.SIGTERM, _terminated)
            require_root(argv)
            return cli.run(argv)
        return command()
    except SdctrError as e:
        if debugging():
            import traceback

            traceback.print_exc()
        if not getattr(e, "shown", False):  # (InitFailed: the init said it on the caller's stderr)
            error(str(e), e.hint)
        return e.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `sdctr save | head`: the reader left, as with any Unix tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    except Exception as e:
        return _internal_error(e)


def _internal_error(e: Exception) -> int:
    """Called in the handler: a traceback with --debug; one line otherwise (a user who is not
    root and got past require_root, with --root, learns why here)."""
    if isinstance(e, PermissionError) and os.geteuid() != 0 and not debugging():
        error(NEEDS_ROOT, hint=f"{e.strerror}: {e.filename}" if e.filename else None)
        return EXIT_SDCTR
    if debugging():
        raise  # noqa: PLE0704 - the exception being handled, from main's except
    error(f"internal error: {e.__class__.__name__}: {e}", hint="run again with --debug for a traceback")
    return EXIT_SDCTR


NEEDS_ROOT = "sdctr needs root: it runs containers as systemd units and keeps them in /var/lib/sdctr"


def require_root(argv: Sequence[str]) -> None:
    """One line for a user who is not root, before anything is tried (help and the version
    excepted; and a store of one's own, --root or SDCTR_ROOT, for the verbs that need no unit)."""
    if os.geteuid() == 0 or any(a in ("-h", "--help", "--version") for a in argv) or not argv:
        return
    if "--root" in argv or os.environ.get("SDCTR_ROOT"):
        return
    raise SdctrError(NEEDS_ROOT, hint="run it as root, e.g. with sudo")


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def unit_command(argv: Sequence[str]) -> Callable[[], int] | None:
    """The unit's own commands, `[--debug] [--root R] init ID` and `... hook STAGE ID`, parsed
    without a parser; None for everything else."""
    rest = list(argv)
    root = None
    debug = False
    while rest[:1] == ["--debug"] or (rest[:1] == ["--root"] and len(rest) > 1):
        if rest[0] == "--debug":
            debug, rest = True, rest[1:]
        else:
            root, rest = rest[1], rest[2:]
    if not (len(rest) == 2 and rest[0] == "init") and not (
            len(rest) == 3 and rest[0] == "hook" and rest[1] in HOOK_STAGES):
        return None
    if debug:
        from sdctr.log import set_debug

        set_debug(True)
    if rest[0] == "init":
        return lambda: run_init(root, rest[1])
    return lambda: run_hook(root, rest[1], rest[2])


def run_init(root: str | None, cid: str) -> int:
    from sdctr.init.standard import run_init
    from sdctr.paths import Paths

    return run_init(Paths.from_root(root), cid)


def run_hook(root: str | None, stage: str, cid: str) -> int:
    from sdctr.paths import Paths
    from sdctr.runtime import hooks

    if stage == "declare":  # by name; its module imports hooks' and lifecycle's
        from sdctr.runtime import declared

        return declared.hook(Paths.from_root(root), cid)
    if stage == "declare-rootfs":
        from sdctr.runtime import declared

        return declared.rootfs_hook(Paths.from_root(root), cid)
    run = {"prestart": hooks.prestart, "stop": hooks.stop, "poststop": hooks.poststop,
           "netup": hooks.netup, "netdown": hooks.netdown,
           "rootfs-up": hooks.rootfs_up, "rootfs-down": hooks.rootfs_down}[stage]
    return run(Paths.from_root(root), cid)
