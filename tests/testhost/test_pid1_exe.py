"""The container's PID 1 against its own root (issue 10, CVE-2019-5736's class): /proc/1/exe is
the reaper's binary, and a container root that can write it, or keep a descriptor of it until
no running process protects it with ETXTBSY, rewrites what the host runs next. It must be a
sealed anonymous copy: no host path behind it, writes refused by its seals for good."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers.pid1_probe import ALL_SEALS, WRITE_REFUSED, WRITES, build_probe, parse_probe
from helpers.rootfs import BUSYBOX_ROOTFS_SH
from helpers.testhost import Machine

pytestmark = pytest.mark.testhost

MAKE_IMAGE = r"""
set -e
rm -rf /tmp/bb-pid1 && sh -s /tmp/bb-pid1 < /tmp/busybox-rootfs.sh
cp /tmp/pid1-probe /tmp/bb-pid1/probe
tar -C /tmp/bb-pid1 -cf /tmp/bb-pid1.tar .
sdctr import /tmp/bb-pid1.tar pid1-probe >/dev/null
rm -rf /tmp/bb-pid1 /tmp/bb-pid1.tar
"""


@pytest.fixture(scope="module")
def host(testhost: Machine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    """The session's test host with an image holding the static probe at /probe."""
    probe_binary = build_probe(tmp_path_factory.mktemp("pid1"))
    testhost.cp(BUSYBOX_ROOTFS_SH, "/tmp/busybox-rootfs.sh")
    testhost.cp(probe_binary, "/tmp/pid1-probe")
    testhost.sh(MAKE_IMAGE)
    yield testhost
    testhost.exec("sdctr", "image", "rm", "pid1-probe", check=False)


def probe(host: Machine, *flags: str) -> dict[str, str]:
    r = host.exec("sdctr", "run", "--rm", *flags, "pid1-probe", "/probe")
    return parse_probe(r.stdout)


@pytest.mark.parametrize("flags", [(), ("--privileged",)], ids=["default", "privileged"])
def test_pid1_exe_is_a_sealed_copy_the_container_cannot_write(host: Machine, flags: tuple[str, ...]) -> None:
    """Root in the container opens /proc/1/exe (the host's tini-static before the fix, behind a
    read-only bind: only ETXTBSY and that mount's flag guarded it) and tries to write it,
    directly and through an O_PATH descriptor as CVE-2019-5736's exploit did.
    The host's reaper is unchanged, /proc/1/exe names no host file, and what it opens carries
    every seal, so a descriptor kept past PID 1's exit cannot write it either.
    --privileged too: all capabilities, yet nothing to remount or unseal."""
    reaper = "/usr/bin/tini-static"
    before = host.exec("sha256sum", reaper).stdout
    seen = probe(host, *flags)
    assert host.exec("sha256sum", reaper).stdout == before
    # no host path (before: "/", the host's file through a detached read-only bind of it)
    assert seen["exe"] == "/memfd:tini-static (deleted)", seen
    assert int(seen["seals"]) == ALL_SEALS, seen  # before: -22 (EINVAL: no memfd)
    for way in WRITES:
        assert seen[way] in WRITE_REFUSED, (way, seen)  # ETXTBSY, EPERM: never 0


def test_the_python_fallback_pid1_is_a_sealed_copy_of_the_interpreter(host: Machine) -> None:
    """Without a static reaper (SDCTR_INIT_REAPER=python, in systemd's manager environment so the
    unit's init inherits it) the init itself stays PID 1: under real systemd (Type=notify,
    MAINPID, the journal's streams) it re-executes from a sealed copy of its interpreter first.
    CAP_SYS_PTRACE lets the probe past the Python PID 1's non-dumpable flag. Before the fix:
    exe "/usr/bin/python3.11", seals -22."""
    # the interpreter of the installed sdctr's script
    python = host.sh("readlink -f \"$(sed -n '1s/^#!//p' \"$(command -v sdctr)\")\"").stdout.strip()
    before = host.exec("sha256sum", python).stdout
    host.exec("systemctl", "set-environment", "SDCTR_INIT_REAPER=python")
    try:
        seen = probe(host, "--cap-add", "SYS_PTRACE")
    finally:
        host.exec("systemctl", "unset-environment", "SDCTR_INIT_REAPER")
    assert host.exec("sha256sum", python).stdout == before
    assert seen["exe"] == "/memfd:sdctr-init (deleted)", seen
    assert int(seen["seals"]) == ALL_SEALS, seen
    for way in WRITES:
        assert seen[way] in WRITE_REFUSED, (way, seen)
