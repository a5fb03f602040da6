"""The bridge network on a host without nft (RHEL7's): the same NAT, published ports and cleanup in
iptables chains of sdctr's own, chosen because nft is missing, with legacy iptables (RHEL7's
kind: not the nft-backed one). Inside the test host's own network namespace, as test_network.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers.network import PAGE, httpd, inspect, network_host, outside_server
from helpers.testhost import Machine, wait_for

pytestmark = pytest.mark.testhost

# RHEL7 as the test host can make it: no nft command, iptables the legacy one; no table or bridge
# an nft run made before (the bridge is netup.sh's sign that the rules are in)
RHEL7_LIKE = """
set -e
sdctr ps -aq | xargs -r sdctr rm -f >/dev/null
nft delete table ip sdctr 2>/dev/null || true
ip link del sdctr0 2>/dev/null || true
mv /usr/sbin/nft /usr/sbin/nft.hidden
update-alternatives --quiet --set iptables /usr/sbin/iptables-legacy
"""
BACK = """
sdctr ps -aq | xargs -r sdctr rm -f >/dev/null
ip link del sdctr0 2>/dev/null
for t in nat filter; do
    iptables-save -t $t | grep -e '-j SDCTR-' | grep -v '^-A SDCTR-' | sed 's/^-A/-D/' \\
        | while read -r rule; do eval iptables -t $t $rule; done
    for c in $(iptables-save -t $t | sed -n 's/^:\\(SDCTR-[A-Z]*\\) .*/\\1/p'); do
        iptables -t $t -F $c && iptables -t $t -X $c
    done
done
update-alternatives --quiet --auto iptables
mv /usr/sbin/nft.hidden /usr/sbin/nft
"""


@pytest.fixture(scope="module")
def host(testhost: Machine) -> Iterator[Machine]:
    with network_host(testhost, before=RHEL7_LIKE, after=BACK) as prepared:
        yield prepared


def port_rules(host: Machine) -> list[str]:
    return [ln for ln in host.exec("iptables-save", "-t", "nat").stdout.splitlines()
            if ln.startswith("-A SDCTR-DNAT")]


def page(host: Machine, url: str) -> str:
    """The page at url, once the server in the container listens."""
    def fetch() -> str:
        return host.exec("get", url, check=False).stdout.strip()  # type: ignore[no-any-return]
    return wait_for(fetch, what=url)  # type: ignore[no-any-return]


def test_without_nft_a_published_port_answers_through_iptables_and_leaves_no_rule(host: Machine) -> None:
    assert "legacy" in host.exec("iptables", "-V").stdout
    assert host.exec("sh", "-c", "command -v nft", check=False).returncode != 0
    cid = httpd(host, "-p", "8080:80")
    try:
        address = inspect(host, cid)["NetworkSettings"]["IPAddress"]
        rules = port_rules(host)
        assert len(rules) == 1 and f"--comment {cid} " in rules[0], rules
        assert "--dport 8080 " in rules[0] and rules[0].endswith(f"--to-destination {address}:80")
        for url in ("http://127.0.0.1:8080/", "http://10.89.0.1:8080/"):
            assert page(host, url) == PAGE
        # from "another machine", through the test host's own address on the link between them
        r = host.exec("ip", "netns", "exec", "outside", "get", "http://198.51.100.1:8080/")
        assert r.stdout.strip() == PAGE
        host.exec("systemctl", "restart", f"ctr-{cid[:12]}.service")  # nothing doubled
        assert len(port_rules(host)) == 1, port_rules(host)
        chains = host.exec("iptables-save").stdout
        for jump in ("-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment sdctr -j SDCTR-DNAT",
                     "-A POSTROUTING -m comment --comment sdctr -j SDCTR-POSTROUTING",
                     "-A FORWARD -m comment --comment sdctr -j SDCTR-FORWARD"):
            assert chains.count(jump) == 1, chains
        assert page(host, "http://127.0.0.1:8080/") == PAGE
    finally:
        host.exec("sdctr", "rm", "-f", cid)
    assert port_rules(host) == []
    assert cid not in host.exec("iptables-save").stdout


def test_without_nft_traffic_out_is_masqueraded(host: Machine) -> None:
    peer = outside_server(host, "198.51.100.2", 9001)
    r = host.exec("sdctr", "run", "--rm", "busybox", "sh", "-c", "echo hi | nc -w 5 198.51.100.2 9001",
                  check=False)
    assert r.returncode == 0, r.stderr
    assert peer() == "198.51.100.1"  # the test host's address, not the container's 10.89.x.y


def test_without_nft_gc_removes_a_port_rule_a_crash_left(host: Machine) -> None:
    stale = "0123456789ab" + "e" * 52
    host.exec("iptables", "-t", "nat", "-A", "SDCTR-DNAT", "-p", "tcp", "-m", "tcp", "--dport", "9998",
              "-m", "comment", "--comment", stale, "-j", "DNAT", "--to-destination", "10.89.9.9:80")
    out = host.exec("sdctr", "system", "gc").stdout
    assert "--dport 9998" in out and stale in out, out
    assert port_rules(host) == []
    assert "0 left-overs removed" in host.exec("sdctr", "system", "gc").stdout


def test_without_nft_networks_are_isolated_and_a_removed_network_leaves_no_rule(host: Machine) -> None:
    host.exec("sdctr", "network", "create", "--subnet", "10.210.0.0/24", "ipt-a")
    host.exec("sdctr", "network", "create", "--subnet", "10.211.0.0/24", "ipt-b")
    try:
        for name, network in (("ia1", "ipt-a"), ("ia2", "ipt-a"), ("ib1", "ipt-b")):
            host.exec("sdctr", "run", "-d", "--name", name, "--network", network, "busybox", "sleep", "600")
        def pings(source: str, target: str) -> bool:
            return host.exec("sdctr", "exec", source, "ping", "-c", "1", "-W", "2", target,
                             check=False).returncode == 0
        ib1 = inspect(host, "ib1")["NetworkSettings"]["IPAddress"]
        assert pings("ia2", "ia1") and pings("ia1", "198.51.100.2")  # within, and out
        assert not pings("ia1", ib1)  # across: SDCTR-FORWARD's drop
        assert '--comment "network ipt-b" -j DROP' in host.exec("iptables-save", "-t", "filter").stdout
    finally:
        host.exec("sdctr", "rm", "-f", "ia1", "ia2", "ib1", check=False)
        host.exec("sdctr", "network", "rm", "ipt-a", "ipt-b", check=False)
    rules = host.exec("iptables-save").stdout
    assert "network ipt-a" not in rules and "network ipt-b" not in rules, rules


def test_without_nft_an_ipv6_network_is_refused_in_one_line_and_not_made(host: Machine) -> None:
    r = host.exec("sdctr", "network", "create", "--ipv6", "--subnet", "fd00:91::/64", "ipt-v6", check=False)
    assert r.returncode == 125, r
    assert r.stderr.splitlines()[0] == ("sdctr: error: IPv6 networks need nftables: this host's rules are in "
                                        "iptables"), r.stderr
    assert "ipt-v6" not in host.exec("sdctr", "network", "ls").stdout
