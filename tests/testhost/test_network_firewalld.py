"""The bridge network where firewalld runs (RHEL 8/9's default): its zones reject forwarded traffic
they do not know, so sdctr puts each bridge into the `trusted` zone over D-Bus, as libvirt and
netavark do, and takes a user network's out when the network goes. firewalld is installed in the
test host's root but masked (no other test sees it): started here, stopped and masked again after.
Inside the test host's own network namespace, as test_network.py."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from helpers.network import PAGE, httpd, network_host, outside_server
from helpers.testhost import Machine, wait_for

pytestmark = pytest.mark.testhost

# no bridge an earlier test made (sdctr trusts a bridge when it makes it); firewalld running
START = """
set -e
sdctr ps -aq | xargs -r sdctr rm -f >/dev/null
ip link del sdctr0 2>/dev/null || true
systemctl unmask --quiet firewalld.service
systemctl start firewalld.service
firewall-cmd --state
"""
STOP = """
sdctr ps -aq | xargs -r sdctr rm -f >/dev/null
systemctl stop firewalld.service
systemctl mask --quiet firewalld.service
ip link del sdctr0
"""


@pytest.fixture(scope="module")
def host(testhost: Machine) -> Iterator[Machine]:
    with network_host(testhost, before=START, after=STOP) as prepared:
        yield prepared


def zone_of(host: Machine, interface: str) -> str:
    r = host.exec("firewall-cmd", f"--get-zone-of-interface={interface}", check=False)
    return r.stdout.strip() if r.returncode == 0 else ""


def test_with_firewalld_the_bridge_is_trusted_and_containers_reach_out_and_are_reached(host: Machine) -> None:
    assert zone_of(host, "sdctr0") == ""
    peer = outside_server(host, "198.51.100.2", 9002)
    # out through firewalld's forward chain (its default zone rejects what it does not know)
    r = host.exec("sdctr", "run", "--rm", "busybox", "sh", "-c", "echo hi | nc -w 5 198.51.100.2 9002",
                  check=False)
    assert r.returncode == 0, r.stderr
    assert zone_of(host, "sdctr0") == "trusted"
    assert peer() == "198.51.100.1"
    # and in, to a published port, from "another machine"
    cid = httpd(host, "-p", "8083:80")
    try:
        def fetch() -> str:
            r = host.exec("ip", "netns", "exec", "outside", "get", "http://198.51.100.1:8083/", check=False)
            return r.stdout.strip()  # type: ignore[no-any-return]
        assert wait_for(fetch, what="the page from outside") == PAGE
    finally:
        host.exec("sdctr", "rm", "-f", cid)


def test_with_firewalld_a_user_networks_bridge_leaves_the_zone_with_the_network(host: Machine) -> None:
    host.exec("sdctr", "network", "create", "walled")
    bridge = ""
    try:
        host.exec("sdctr", "run", "--rm", "--network", "walled", "busybox", "true")
        bridge = json.loads(host.exec("cat", "/var/lib/sdctr/netconf/walled.json").stdout)["bridge"]
        assert zone_of(host, bridge) == "trusted"
    finally:
        host.exec("sdctr", "network", "rm", "walled")
    assert zone_of(host, bridge) == ""
