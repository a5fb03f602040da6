"""The host tier's ground: this machine makes PID namespaces and veth pairs between throwaway
network namespaces that the test makes and removes. Only `unshare` and `ip` run here, no sdctr
code: sdctr's init is proven in test_init.py; its networking (bridge, veth) has no test yet."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.host


def sh(script: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, f"{script}: exit {r.returncode}\n{r.stderr}"
    return r


def test_a_new_pid_namespace_starts_at_pid_1() -> None:
    r = sh("unshare --pid --fork --mount-proc sh -c 'echo $$; ls /proc | grep -c \"^[0-9]\"'")
    pid, count = r.stdout.split()
    assert pid == "1"
    assert int(count) <= 3  # sh, ls and grep: none of the machine's processes


@pytest.fixture
def two_netns() -> Iterator[tuple[str, str]]:
    names = (f"sdctr-t-{uuid.uuid4().hex[:6]}", f"sdctr-t-{uuid.uuid4().hex[:6]}")
    for n in names:
        sh(f"ip netns add {n}")
    try:
        yield names
    finally:
        for n in names:
            subprocess.run(["ip", "netns", "del", n], check=False)


def test_veth_pair_between_throwaway_namespaces_carries_traffic(two_netns: tuple[str, str]) -> None:
    a, b = two_netns
    # Both ends live in namespaces this test made: nothing touches the machine's own interfaces.
    sh(f"ip -n {a} link add va type veth peer name vb netns {b}")
    sh(f"ip -n {a} addr add 10.123.0.1/30 dev va && ip -n {a} link set va up && ip -n {a} link set lo up")
    sh(f"ip -n {b} addr add 10.123.0.2/30 dev vb && ip -n {b} link set vb up && ip -n {b} link set lo up")
    r = sh(f"ip netns exec {a} ping -c 1 -W 2 10.123.0.2")
    assert "1 received" in r.stdout
    # the machine's own namespace never saw it
    assert subprocess.run(["ip", "link", "show", "va"], capture_output=True).returncode != 0
