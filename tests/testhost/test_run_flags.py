"""`sdctr run` and `sdctr logs` flags end to end under a real systemd, each checked as a user would:
`logs -f` and `--since`, `--cap-add`/`--cap-drop` as /proc/1/status shows them inside, `--entrypoint`,
`--env-file`. (`run --platform` is in test_pull_and_run.py, where a registry serves two platforms.)"""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Iterator

import pytest
from helpers import docker
from helpers.rootfs import BUSYBOX_ROOTFS_SH
from helpers.testhost import TESTHOST, Machine, wait_for

pytestmark = pytest.mark.testhost

IMAGE, WITH_ENTRYPOINT = "busybox-flags", "busybox-ep"


@pytest.fixture(scope="module")
def host(testhost: Machine) -> Iterator[Machine]:
    testhost.exec("sh", "-c", "rm -rf /tmp/bb-flags && sh -s /tmp/bb-flags",
                  input=BUSYBOX_ROOTFS_SH.read_text())
    testhost.sh(f"tar -C /tmp/bb-flags -cf /tmp/bb-flags.tar . && sdctr import /tmp/bb-flags.tar {IMAGE} && "
                f"sdctr import -c 'ENTRYPOINT [\"/bin/echo\", \"image-entrypoint\"]' /tmp/bb-flags.tar "
                f"{WITH_ENTRYPOINT}")
    yield testhost
    testhost.sh(f"sdctr ps -aq | xargs -r sdctr rm -f; sdctr rmi -f {IMAGE} {WITH_ENTRYPOINT}; "
                "rm -rf /tmp/bb-flags /tmp/bb-flags.tar /tmp/flags.env", check=False)


def run_d(host: Machine, *args: str) -> str:
    return host.exec("sdctr", "run", "-d", *args).stdout.strip()


def read_lines(proc: subprocess.Popen[bytes], count: int, timeout: float) -> list[str]:
    """`count` lines from proc's stdout, or what came before the timeout."""
    assert proc.stdout is not None
    data, deadline = b"", time.monotonic() + timeout
    while data.count(b"\n") < count and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            data += chunk
    return data.decode().splitlines()


def test_logs_follow_shows_lines_as_they_come(host: Machine) -> None:
    cid = run_d(host, IMAGE, "sh", "-c", "echo first; sleep 2; echo second; sleep 1000")
    follower = subprocess.Popen([str(TESTHOST), "exec", host.name, "--", "sdctr", "logs", "-f", cid],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert read_lines(follower, 1, 15) == ["first"]
        started = time.monotonic()
        assert read_lines(follower, 1, 15) == ["second"]  # printed two seconds after the first
        assert time.monotonic() - started > 0.5
        assert follower.poll() is None  # still following
    finally:
        follower.kill()
        follower.wait()
        host.exec("sdctr", "rm", "-f", cid)


def test_logs_since(host: Machine) -> None:
    cid = run_d(host, IMAGE, "sh", "-c", "echo old; sleep 8; echo new; sleep 1000")
    try:
        wait_for(lambda: "new" in host.exec("sdctr", "logs", cid).stdout, what="the second line")
        assert host.exec("sdctr", "logs", cid).stdout == "old\nnew\n"
        # Docker's relative form: the last 5 s hold "new" (read at once) but not "old" (8 s older)
        assert host.exec("sdctr", "logs", "--since", "5s", cid).stdout == "new\n"
        stamped = host.exec("sdctr", "logs", "-t", cid).stdout.splitlines()
        new_at = stamped[1].split()[0]  # 2026-11-30T00:40:01.123456Z
        epoch = time.mktime(time.strptime(new_at[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert host.exec("sdctr", "logs", "--since", str(int(epoch) - 1), cid).stdout == "new\n"
    finally:
        host.exec("sdctr", "rm", "-f", cid)


def status_caps(host: Machine, *flags: str) -> dict[str, int]:
    out = host.exec("sdctr", "run", "--rm", *flags, IMAGE, "grep", "^Cap", "/proc/1/status").stdout
    return {k: int(v, 16) for k, v in (line.split(":\t") for line in out.splitlines())}


def test_cap_add_and_cap_drop_as_the_container_sees_them(host: Machine) -> None:
    assert status_caps(host)["CapBnd"] == docker.DEFAULT_CAPS_MASK
    changed = status_caps(host, "--cap-drop", "chown", "--cap-drop", "CAP_KILL", "--cap-add", "net_admin")
    expected = docker.DEFAULT_CAPS_MASK - docker.mask("CAP_CHOWN", "CAP_KILL") + docker.mask("CAP_NET_ADMIN")
    assert changed["CapEff"] == changed["CapBnd"] == changed["CapPrm"] == expected, changed
    assert changed["CapInh"] == 0
    none = status_caps(host, "--cap-drop", "all", "--cap-add", "sys_time")
    assert none["CapEff"] == none["CapBnd"] == docker.mask("CAP_SYS_TIME"), none
    # and the kernel holds the container to it: without CAP_CHOWN, root cannot give a file away
    r = host.exec("sdctr", "run", "--rm", "--cap-drop", "chown", IMAGE, "sh", "-c",
                  "touch /f && chown 1000 /f", check=False)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr + r.stdout, r


def test_entrypoint(host: Machine) -> None:
    assert host.exec("sdctr", "run", "--rm", WITH_ENTRYPOINT, "arg").stdout == "image-entrypoint arg\n"
    assert host.exec("sdctr", "run", "--rm", "--entrypoint", "/bin/echo", WITH_ENTRYPOINT,
                     "mine").stdout == "mine\n"
    assert host.exec("sdctr", "run", "--rm", "--entrypoint", "printf", IMAGE, "%s-%s", "a",
                     "b").stdout == "a-b"


def test_env_file(host: Machine) -> None:
    host.exec("sh", "-c", "cat > /tmp/flags.env", input="# a comment\nA=1\n\nB=two words\nC=from-file\n")
    r = host.exec("sdctr", "run", "--rm", "--env-file", "/tmp/flags.env", "-e", "C=from-flag", IMAGE,
                  "sh", "-c", 'echo "$A|$B|$C"')
    assert r.stdout == "1|two words|from-flag\n"
    missing = host.exec("sdctr", "run", "--rm", "--env-file", "/tmp/no-such.env", IMAGE, "true", check=False)
    assert missing.returncode == 125 and "--env-file" in missing.stderr
