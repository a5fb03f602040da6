"""The fallback PID 1 when the host has neither tini nor catatonit: the init process itself stays
behind as a tiny reaper instead of exec'ing one.

Memory: this costs a whole Python interpreter per container (about 13 MiB RSS, measured in the
host tier's report, and 6.5 MiB of shmem for the sealed copy of the interpreter it runs from:
sdctr.init.sealed), against about 0.1-0.3 MiB for tini-static, so the init prefers tini wherever
it is installed; the target is 1 MiB per running container outside the workload.

PID 1 of a PID namespace gets only the signals it has a handler for or blocks (kernel
sig_task_ignored: SIGNAL_UNKILLABLE with SIG_DFL), and every orphan in the namespace is
reparented to it. So: block the forwarded signals and SIGCHLD, wait for them synchronously with
sigwaitinfo (no Python handlers running at odd points), pass the first to the command, reap
everything the second announces, and exit with the command's status once it is gone; the kernel
then kills what is left in the namespace.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Sequence

from sdctr import linux
from sdctr.log import EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND, EXIT_SDCTR
from sdctr.spec import env_mapping

# typing.TYPE_CHECKING without importing typing: the init and the hooks import this module,
# and typing is ~3 ms of each start of theirs
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH)


def exit_status(wait_status: int) -> int:
    """A shell's convention: the exit code, or 128+N for death by signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return code if code >= 0 else 128 - code


def run(path: str, argv: Sequence[str], env: Sequence[str], report_fd: int, tty: bool) -> NoReturn:
    """Forks and execs the command, then reaps until it exits; never returns. If exec fails the
    command's process writes "STATUS message" to report_fd (close-on-exec, so a successful exec
    closes it and the host-side parent sees end of file)."""
    waited = {*FORWARDED, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    pid = os.fork()
    if pid == 0:
        _exec_command(path, argv, env, report_fd, tty)
    os.close(report_fd)
    # A non-dumpable PID 1 keeps the container's root out of /proc/1/exe and /proc/1/mem unless
    # it has CAP_SYS_PTRACE; even then /proc/1/exe is a sealed memfd copy of python3
    # (standard.become_sealed_init), never the host's file (CVE-2019-5736's class).
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    while True:
        info = signal.sigwaitinfo(waited)
        if info.si_signo != signal.SIGCHLD:
            try:
                os.kill(pid, info.si_signo)
            except ProcessLookupError:
                pass
            continue
        while True:
            try:
                child, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if child == 0:
                break
            if child == pid:
                os._exit(exit_status(status))


def _exec_command(path: str, argv: Sequence[str], env: Sequence[str], report_fd: int,
                  tty: bool) -> NoReturn:
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        if tty:  # the command owns the terminal's foreground, as under tini
            os.setpgid(0, 0)
            signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            os.tcsetpgrp(0, os.getpid())
            signal.signal(signal.SIGTTOU, signal.SIG_DFL)
        os.execve(path, list(argv), env_mapping(env))
    except OSError as e:
        status = EXIT_NOT_FOUND if e.errno == errno.ENOENT else EXIT_CANNOT_INVOKE
        os.write(report_fd, f"{status} cannot run {argv[0]}: {e.strerror}\n".encode())
        os._exit(status)
    finally:
        os._exit(EXIT_SDCTR)
