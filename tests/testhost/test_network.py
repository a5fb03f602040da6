"""The bridge network under a real systemd, checked as a user would: a published busybox httpd
answers through 127.0.0.1, the gateway and from "another machine"; traffic out is masqueraded;
addresses are distinct; nothing is left over or doubled after stop, rm -f, kill -9 and restart;
bad input is one line and status 125. Everything happens inside the test host's own network
namespace, and "other machines" are namespaces this module makes there (and removes)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator

import pytest
from helpers.network import PAGE, httpd, inspect, network_host, outside_server
from helpers.testhost import Machine, wait_for

pytestmark = pytest.mark.testhost


@pytest.fixture(scope="module")
def host(testhost: Machine) -> Iterator[Machine]:
    with network_host(testhost, after="sdctr ps -aq | xargs -r sdctr rm -f") as prepared:
        yield prepared


def network_state(host: Machine) -> dict[str, list[str]]:
    """Every trace a container leaves on the network: veths, leases, map elements, pins."""
    veths = [ln.split(":")[1].strip().split("@")[0]
             for ln in host.exec("ip", "-o", "link", "show").stdout.splitlines() if ": sdv" in ln]
    leases = host.sh("cat /var/lib/sdctr/networks/bridge/* 2>/dev/null || true").stdout.split()
    listing = host.exec("nft", "-j", "list", "table", "ip", "sdctr", check=False).stdout or '{"nftables": []}'
    elements = [str(e) for item in json.loads(listing)["nftables"] if "map" in item
                for e in item["map"].get("elem", [])]
    pins = host.sh("ls /run/sdctr/netns 2>/dev/null || true").stdout.split()
    return {"veths": sorted(veths), "leases": sorted(leases),
            "elements": elements, "pins": pins}


def assert_clean(host: Machine) -> None:
    assert network_state(host) == {"veths": [], "leases": [], "elements": [], "pins": []}


def assert_one_each(host: Machine, cid: str, elements: int = 1) -> None:
    state = network_state(host)
    assert state["veths"] == [f"sdv{cid[:12]}"] and state["pins"] == [cid], state
    assert len(state["leases"]) == 1 and len(state["elements"]) == elements, state


def test_a_published_port_answers_from_the_host_and_from_another_machine(host: Machine) -> None:
    cid = httpd(host, "-p", "8080:80")
    try:
        settings = inspect(host, cid)["NetworkSettings"]
        assert settings["Gateway"] == "10.89.0.1" and settings["IPAddress"].startswith("10.89.")
        assert settings["MacAddress"].startswith("02:42:")
        assert settings["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
        for url in ("http://127.0.0.1:8080/", "http://10.89.0.1:8080/",
                    f"http://{settings['IPAddress']}/"):
            assert host.exec("get", url).stdout.strip() == PAGE, url
        # from "another machine", through the test host's own address on the link between them
        r = host.exec("ip", "netns", "exec", "outside", "get", "http://198.51.100.1:8080/")
        assert r.stdout.strip() == PAGE
        inside = host.exec("sdctr", "exec", cid, "cat", "/etc/hosts", "/etc/resolv.conf").stdout
        assert f"{settings['IPAddress']}\t{cid[:12]}" in inside and "nameserver" in inside
    finally:
        host.exec("sdctr", "rm", "-f", cid)
    assert_clean(host)


def test_traffic_out_is_masqueraded(host: Machine) -> None:
    peer = outside_server(host, "198.51.100.2", 9000)
    r = host.exec("sdctr", "run", "--rm", "--network", "bridge", "busybox", "sh", "-c",
                  "echo hi | nc 198.51.100.2 9000", check=False)
    assert r.returncode == 0, r.stderr
    assert peer() == "198.51.100.1"  # the test host's address, not the container's 10.89.x.y
    wait_for(lambda: network_state(host)["veths"] == [], what="the --rm container's veth to go")
    assert_clean(host)


def traces(host: Machine) -> dict[str, list[str]]:
    """Per container (short id): each veth, lease, map element and pin it has on the host."""
    found: dict[str, list[str]] = {}
    for name in network_state(host)["veths"]:
        found.setdefault(name[3:], []).append("veth")
    leases = host.sh("cd /var/lib/sdctr/networks/bridge 2>/dev/null && ls || true").stdout.split()
    for cid in leases:
        found.setdefault(cid[:12], []).append("lease")
    listing = host.exec("nft", "-j", "list", "table", "ip", "sdctr", check=False).stdout or '{"nftables": []}'
    for item in json.loads(listing)["nftables"]:
        for e in item.get("map", {}).get("elem", []):
            found.setdefault(e[0]["elem"]["comment"][:12], []).append("element")
    for pin in host.sh("ls /run/sdctr/netns 2>/dev/null || true").stdout.split():
        found.setdefault(pin[:12], []).append("pin")
    return {cid: sorted(kinds) for cid, kinds in found.items()}


def test_fifty_containers_at_once_then_stop_rm_kill_and_restart_leave_one_of_each(host: Machine) -> None:
    # a layer no container has unpacked yet: the fifty race to unpack it too
    host.sh("echo $$ > /tmp/bb/fifty && tar -C /tmp/bb -cf /tmp/bb50.tar . && rm /tmp/bb/fifty && "
            "sdctr import /tmp/bb50.tar bb50 >/dev/null")
    # every other one publishes a port (the Python hooks), the rest go through netup.sh/netdown.sh
    r = host.sh("for i in $(seq 50); do if [ $((i % 2)) = 0 ]; then p='-p 80'; else p=; fi; "
                "sdctr run -d $p bb50 sleep 600 & done; wait", timeout=600, check=False)
    ids = r.stdout.split()
    try:
        assert len(ids) == 50 and r.stderr == "", r.stderr
        docs = json.loads(host.exec("sdctr", "inspect", *ids).stdout)
        addresses = [d["NetworkSettings"]["IPAddress"] for d in docs]
        assert len(set(addresses)) == 50 and all(a.startswith("10.89.") for a in addresses)
        ports = {d["Id"]: len(d["NetworkSettings"]["Ports"]) for d in docs}
        assert sum(ports.values()) == 25

        def one_each(cid: str) -> list[str]:
            return sorted(["veth", "lease", "pin"] + ["element"] * ports[cid])
        assert traces(host) == {cid[:12]: one_each(cid) for cid in ids}
        host.exec("sdctr", "exec", ids[0], "ping", "-c", "1", "-W", "3", addresses[1])
        # ten of each, all at once: stop, rm -f, kill -9 of every process of the unit, restart
        stopped, removed, killed, restarted = ids[0:10], ids[10:20], ids[20:30], ids[30:40]
        units = [f"ctr-{cid[:12]}.service" for cid in restarted]
        killed_units = [f"ctr-{cid[:12]}.service" for cid in killed]
        r = host.sh(" ".join(
            [f"sdctr stop {c} >/dev/null &" for c in stopped]
            + [f"sdctr rm -f {c} >/dev/null &" for c in removed]
            + [f"systemctl kill -s KILL {u} &" for u in killed_units]
            + [f"systemctl restart {u} &" for u in units]) + " wait", timeout=600, check=False)
        assert r.stderr == "", r.stderr
        wait_for(lambda: all(host.exec("systemctl", "is-active", u, check=False).stdout.strip()
                             in ("inactive", "failed") for u in killed_units), what="the killed units")
        running = [cid for cid in ids if cid not in (*stopped, *removed, *killed)]
        assert traces(host) == {cid[:12]: one_each(cid) for cid in running}
        docs = json.loads(host.exec("sdctr", "inspect", *running).stdout)
        now = [d["NetworkSettings"]["IPAddress"] for d in docs]
        assert len(set(now)) == 20
        # and the stopped and killed ones come back with one of each too
        host.sh(" ".join(f"sdctr start {c} >/dev/null &" for c in (*stopped, *killed)) + " wait", timeout=600)
        assert traces(host) == {cid[:12]: one_each(cid) for cid in ids if cid not in removed}
        # the table's own rules once each, after the 90 set-ups that re-sent them
        listing = host.exec("nft", "list", "table", "ip", "sdctr").stdout
        assert listing.count("masquerade") == 2 and listing.count("dnat ip to") == 4, listing
    finally:
        host.sh("sdctr rm -f " + " ".join(ids) + " >/dev/null 2>&1", timeout=600, check=False)
        host.exec("sdctr", "rmi", "bb50", check=False)
    assert_clean(host)


# with a published port the Python hooks do it all; without, sdctr/netup.sh and netdown.sh do,
# and hand over to the hooks what an earlier start left (the kill -9's veth and pin)
@pytest.mark.parametrize("ports", [["-p", "8081:80"], []], ids=["hooks", "scripts"])
def test_stop_kill_restart_and_rm_leave_nothing_over_or_doubled(host: Machine, ports: list[str]) -> None:
    cid = httpd(host, *ports)
    unit = f"ctr-{cid[:12]}.service"
    n = len(ports) // 2

    def answers() -> None:
        address = inspect(host, cid)["NetworkSettings"]["IPAddress"]
        url = "http://127.0.0.1:8081/" if ports else f"http://{address}/"
        def fetch() -> str:
            return host.exec("get", url, check=False).stdout.strip()  # type: ignore[no-any-return]
        assert wait_for(fetch, what=url) == PAGE
    try:
        assert_one_each(host, cid, n)
        host.exec("systemctl", "restart", unit)
        assert_one_each(host, cid, n)
        answers()
        host.exec("sdctr", "stop", cid)
        assert_clean(host)
        host.exec("sdctr", "start", cid)
        assert_one_each(host, cid, n)
        host.exec("systemctl", "kill", "-s", "KILL", unit)
        wait_for(lambda: host.exec("systemctl", "is-active", unit, check=False).stdout.strip()
                 in ("inactive", "failed"), what="the killed unit to stop")
        assert_clean(host)
        host.exec("sdctr", "start", cid)
        answers()
        # what a killed netdown leaves (here its veth): the next start hands it to the hook
        host.exec("sdctr", "stop", cid)
        host.exec("ip", "link", "add", f"sdv{cid[:12]}", "type", "veth", "peer", "name", f"sdp{cid[:12]}")
        host.exec("sdctr", "start", cid)
        assert_one_each(host, cid, n)
        answers()
    finally:
        host.exec("sdctr", "rm", "-f", cid)
    assert_clean(host)


def test_gc_removes_what_a_crash_left(host: Machine) -> None:
    stale = "0123456789ab" + "c" * 52
    host.sh(f"""
        set -e
        ip link add sdv{stale[:12]} type veth peer name sdp{stale[:12]}
        mkdir -p /run/sdctr/netns && touch /run/sdctr/netns/{stale}
        unshare --net=/run/sdctr/netns/{stale} true
        nft 'add element ip sdctr ports {{ tcp . 9999 comment "{stale}" : 10.89.9.9 . 80 }}'
        echo 10.89.9.9 > /var/lib/sdctr/networks/bridge/{stale}
    """)
    out = host.exec("sdctr", "system", "gc").stdout
    for what in (f"veth sdv{stale[:12]}", "lease 10.89.9.9", "tcp . 9999", f"netns /run/sdctr/netns/{stale}"):
        assert what in out, out
    assert_clean(host)
    assert "0 left-overs removed" in host.exec("sdctr", "system", "gc").stdout


@pytest.mark.parametrize(("flags", "message"), [
    (["-p", "9090:80"], "host port 9090/tcp is already in use"),
    (["-p", "8082:80"], "host port 8082/tcp is already published by container"),
    (["--ip", "10.90.0.5"], "is not a host address of the network's subnet 10.89.0.0/16"),
    (["--ip", "10.89.0.1"], "is the network's gateway"),
])
def test_bad_input_is_one_line_status_125_and_nothing_made(host: Machine, flags: list[str],
                                                            message: str) -> None:
    listener = host.sh("python3 -c 'import socket,time; s=socket.socket(); s.bind((\"0.0.0.0\", 9090)); "
                       "s.listen(); time.sleep(60)' >/dev/null 2>&1 & echo $!").stdout.strip()
    other = httpd(host, "-p", "8082:80")
    try:
        wait_for(lambda: ":9090" in host.exec("ss", "-ltn").stdout, what="the listener")
        before = host.exec("sdctr", "ps", "-aq").stdout.split()
        r = host.exec("sdctr", "run", "-d", "--network", "bridge", *flags, "busybox", "true", check=False)
        assert r.returncode == 125, r
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("sdctr: error:")]
        assert len(lines) == 1 and message in lines[0], r.stderr
        assert host.exec("sdctr", "ps", "-aq").stdout.split() == before
        assert_one_each(host, other)
    finally:
        host.exec("kill", listener, check=False)
        host.exec("sdctr", "rm", "-f", other)
    assert_clean(host)


def test_an_unknown_network_is_refused(host: Machine) -> None:
    r = host.exec("sdctr", "run", "--network", "nosuch", "busybox", "true", check=False)
    assert r.returncode == 125 and r.stderr.splitlines()[0] == (
        "sdctr: error: --network 'nosuch': no such network")


def test_bridge_is_the_default_and_a_host_without_nft_or_iptables_is_told_in_one_line(host: Machine) -> None:
    out = host.exec("sdctr", "run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert " 10.89." in out, out  # no --network: the bridge, as Docker's default
    host.exec("chmod", "-x", "/usr/sbin/nft", "/usr/sbin/xtables-nft-multi")  # (iptables is the latter)
    try:
        before = host.exec("sdctr", "ps", "-aq").stdout.split()
        r = host.exec("sdctr", "run", "--rm", "busybox", "true", check=False)
        assert r.returncode == 125, r
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("sdctr: error:")]
        assert lines == ["sdctr: error: the bridge network needs nft or iptables, which this host lacks "
                         "(package nftables or iptables)"], r.stderr
        assert host.exec("sdctr", "ps", "-aq").stdout.split() == before
        # the other networks need no nft
        for network in ("none", "host"):
            host.exec("sdctr", "run", "--rm", "--network", network, "busybox", "true")
    finally:
        host.exec("chmod", "+x", "/usr/sbin/nft", "/usr/sbin/xtables-nft-multi")
    assert_clean(host)


def page_at(host: Machine, port: int | str) -> str:
    """The page through 127.0.0.1:PORT, once the server in the container listens."""
    def fetch() -> str:
        return host.exec("get", f"http://127.0.0.1:{port}/", check=False).stdout.strip()  # type: ignore[no-any-return]
    return wait_for(fetch, what=f"port {port}")  # type: ignore[no-any-return]


def test_publish_all_and_a_range_answer_and_port_shows_them(host: Machine) -> None:
    host.exec("sdctr", "import", "--change", "EXPOSE 80", "--change", "EXPOSE 81", "/tmp/bb.tar",
              "web-exposed")
    cid = host.exec("sdctr", "run", "-d", "-P", "-p", "8090-8091:80-81", "-v", "/tmp/www:/www", "web-exposed",
                    "sh", "-c", "httpd -p 80 -h /www; httpd -f -p 81 -h /www").stdout.strip()
    try:
        lines = host.exec("sdctr", "port", cid).stdout.splitlines()
        # -p publishes 80 and 81 already: -P adds nothing for them
        assert lines == ["80/tcp -> 0.0.0.0:8090", "81/tcp -> 0.0.0.0:8091"], lines
        assert page_at(host, 8090) == page_at(host, 8091) == PAGE
    finally:
        host.exec("sdctr", "rm", "-f", cid)
    cid = host.exec("sdctr", "run", "-d", "-P", "-v", "/tmp/www:/www", "web-exposed",
                    "httpd", "-f", "-p", "81", "-h", "/www").stdout.strip()
    try:
        lines = host.exec("sdctr", "port", cid).stdout.splitlines()
        assert [ln.split(" -> ")[0] for ln in lines] == ["80/tcp", "81/tcp"], lines
        hostport = host.exec("sdctr", "port", cid, "81").stdout.strip()
        assert hostport.startswith("0.0.0.0:") and int(hostport.split(":")[1]) > 1024
        assert page_at(host, hostport.split(":")[1]) == PAGE
        r = host.exec("sdctr", "port", cid, "82", check=False)
        assert r.returncode == 1 and "no public port '82/tcp' published for" in r.stderr
    finally:
        host.exec("sdctr", "rm", "-f", cid)
    assert_clean(host)


def test_user_networks_reach_by_name_within_and_not_across(host: Machine) -> None:
    host.exec("sdctr", "network", "create", "front")
    host.exec("sdctr", "network", "create", "--subnet", "10.200.0.0/24", "back")
    names = ("a1", "b1", "c1")
    try:
        assert [ln.split()[1] for ln in host.exec("sdctr", "network", "ls").stdout.splitlines()[1:]] == [
            "bridge", "host", "none", "back", "front"]
        for name, network in zip(names, ("front", "front", "back")):
            host.exec("sdctr", "run", "-d", "--name", name, "--network", network, "busybox",
                      "sleep", "600")
        c1 = inspect(host, "c1")["NetworkSettings"]["IPAddress"]
        assert c1.startswith("10.200.0.")
        def pings(source: str, target: str) -> bool:
            return host.exec("sdctr", "exec", source, "ping", "-c", "1", "-W", "2", target,
                             check=False).returncode == 0
        # within a network by name (its /etc/hosts, kept current by the hooks), both ways
        assert pings("b1", "a1") and pings("a1", "b1")
        # across networks neither by name nor by address
        assert not pings("a1", "c1") and not pings("a1", c1)
        # and out through the masquerade, as on the default network
        assert pings("c1", "198.51.100.2")
        r = host.exec("sdctr", "network", "rm", "front", check=False)
        assert r.returncode == 1 and "network front is in use by container a1, b1" in r.stderr
        host.exec("sdctr", "rm", "-f", "b1")
        assert "b1" not in host.exec("sdctr", "exec", "a1", "cat", "/etc/hosts").stdout
    finally:
        host.exec("sdctr", "rm", "-f", *names, check=False)
        host.exec("sdctr", "network", "rm", "front", "back", check=False)
    assert host.exec("sdctr", "network", "ls", "-q").stdout.count("\n") == 3
    assert "sdbr" not in host.exec("ip", "-o", "link").stdout
    assert " drop " not in host.exec("nft", "list", "table", "ip", "sdctr").stdout
    assert_clean(host)


def test_add_host_dns_and_mac_address_are_the_containers(host: Machine) -> None:
    names = ("--add-host", "db:10.1.2.3", "--add-host", "gw:host-gateway", "--dns", "192.0.2.53",
             "--dns", "192.0.2.54", "--dns-search", "example.test", "--dns-option", "ndots:2")
    show = ("sh", "-c", "cat /etc/hosts /etc/resolv.conf")
    out = host.exec("sdctr", "run", "--rm", *names, "--mac-address", "02:aa:bb:cc:dd:ee", "busybox",
                    "sh", "-c", "cat /etc/hosts /etc/resolv.conf /sys/class/net/eth0/address").stdout
    lines = out.splitlines()
    assert "10.1.2.3\tdb" in lines and "10.89.0.1\tgw" in lines, out  # host-gateway: the bridge's
    assert [ln for ln in lines if ln.startswith(("nameserver", "search", "options"))] == [
        "nameserver 192.0.2.53", "nameserver 192.0.2.54", "search example.test", "options ndots:2"], out
    assert lines[-1] == "02:aa:bb:cc:dd:ee", out
    for network in ("host", "none"):
        lines = host.exec("sdctr", "run", "--rm", "--network", network, *names, "busybox",
                          *show).stdout.splitlines()
        assert "10.1.2.3\tdb" in lines and "nameserver 192.0.2.53" in lines, lines
        assert "10.89.0.1\tgw" in lines, lines  # the default bridge's gateway, as Docker's
        assert "search example.test" in lines and "options ndots:2" in lines, lines
    assert_clean(host)


@pytest.mark.parametrize(("flags", "message"), [
    (["--add-host", "db"], "--add-host 'db' is not NAME:ADDRESS"),
    (["--add-host", "db:10.1.2"], "--add-host 'db:10.1.2': '10.1.2' is not an IP address"),
    (["--dns", "resolver"], "--dns 'resolver' is not an IP address"),
    (["--dns-search", "a b"], "--dns-search 'a b' is not a domain name"),
    (["--dns-option", "ndots 2"], "--dns-option 'ndots 2' is not one resolver option"),
    (["--mac-address", "02:aa:bb"], "--mac-address '02:aa:bb' is not a MAC address"),
    (["--mac-address", "01:aa:bb:cc:dd:ee"], "is a multicast address"),
    (["--network", "host", "--mac-address", "02:aa:bb:cc:dd:ee"], "--mac-address needs a bridge network"),
])
def test_bad_names_and_addresses_are_one_line_status_125(host: Machine, flags: list[str],
                                                         message: str) -> None:
    r = host.exec("sdctr", "run", "--rm", *flags, "busybox", "true", check=False)
    assert r.returncode == 125, r
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("sdctr: error:")]
    assert len(lines) == 1 and message in lines[0], r.stderr


def test_a_network_alias_resolves_from_the_others_and_prune_removes_unused_networks(host: Machine) -> None:
    host.exec("sdctr", "network", "create", "aliased")
    host.exec("sdctr", "network", "create", "unused")
    try:
        host.exec("sdctr", "run", "-d", "--name", "al1", "--network", "aliased", "--network-alias", "db",
                  "--network-alias", "db.internal", "busybox", "sleep", "600")
        host.exec("sdctr", "run", "-d", "--name", "al2", "--network", "aliased", "busybox", "sleep", "600")
        for alias in ("db", "db.internal", "al1"):
            assert host.exec("sdctr", "exec", "al2", "ping", "-c", "1", "-W", "2", alias,
                             check=False).returncode == 0, alias
        r = host.exec("sdctr", "run", "--rm", "--network-alias", "x", "busybox", "true", check=False)
        assert r.returncode == 125 and r.stderr.splitlines()[0] == (
            "sdctr: error: --network-alias needs a user network, not --network bridge"), r.stderr
        out = host.exec("sdctr", "network", "prune", "-f").stdout
        assert out.splitlines() == ["Deleted Networks:", "unused"], out
        assert [ln.split()[1] for ln in host.exec("sdctr", "network", "ls").stdout.splitlines()[1:]] == [
            "bridge", "host", "none", "aliased"]
    finally:
        host.exec("sdctr", "rm", "-f", "al1", "al2", check=False)
        host.exec("sdctr", "network", "rm", "aliased", "unused", check=False)
    assert_clean(host)


def dns_traces(host: Machine) -> dict[str, list[str]]:
    """Every trace of a user network's DNS server: processes, units, files."""
    return {"processes": host.exec("pgrep", "-a", "-x", "dnsmasq", check=False).stdout.splitlines(),
            "units": host.sh("systemctl list-units --all --plain --no-legend 'sdctr-dns-*'").stdout.split(),
            "files": host.sh("ls /run/sdctr-dns 2>/dev/null || true").stdout.split()}


def answers(host: Machine, source: str, name: str) -> list[str]:
    """busybox nslookup: questions (A, AAAA) to the server in resolv.conf, never /etc/hosts; the
    addresses it answers."""
    r = host.exec("sdctr", "exec", source, "nslookup", name, check=False)
    return re.findall(r"^Address: (\S+)$", r.stdout, re.MULTILINE) if r.returncode == 0 else []


def lookup(host: Machine, source: str, name: str) -> str:
    """The first address the server answers for `name`, "" for none."""
    return next(iter(answers(host, source, name)), "")


def test_a_user_networks_dns_server_answers_its_members_by_name_and_alias_and_goes_with_it(
        host: Machine) -> None:
    host.exec("sdctr", "network", "create", "named")
    host.exec("sdctr", "network", "create", "--subnet", "10.204.0.0/24", "apart")
    names = ("dn1", "dn2", "dn3")
    try:
        host.exec("sdctr", "run", "-d", "--name", "dn1", "--network", "named", "--network-alias", "db",
                  "busybox", "sleep", "600")
        host.exec("sdctr", "run", "-d", "--name", "dn2", "--network", "named", "busybox", "sleep", "600")
        host.exec("sdctr", "run", "-d", "--name", "dn3", "--network", "apart", "busybox", "sleep", "600")
        bridge = json.loads(host.exec("cat", "/var/lib/sdctr/netconf/named.json").stdout)["bridge"]
        assert host.exec("systemctl", "is-active", f"sdctr-dns-{bridge}.service").stdout.strip() == "active"
        dn1, gateway = (inspect(host, "dn1")["NetworkSettings"][k] for k in ("IPAddress", "Gateway"))
        resolv = host.exec("sdctr", "exec", "dn2", "cat", "/etc/resolv.conf").stdout
        assert [ln for ln in resolv.splitlines() if ln.startswith("nameserver")] == [
            f"nameserver {gateway}"], resolv
        # by name and by alias, from the server (the members' /etc/hosts do not name each other)
        assert lookup(host, "dn2", "dn1") == dn1 and lookup(host, "dn2", "db") == dn1
        assert lookup(host, "dn1", "dn2") == inspect(host, "dn2")["NetworkSettings"]["IPAddress"]
        assert "dn1" not in host.exec("sdctr", "exec", "dn2", "cat", "/etc/hosts").stdout
        # not from another network, whose server knows its own members only
        assert lookup(host, "dn3", "dn1") == "" and lookup(host, "dn3", "db") == ""
        assert lookup(host, "dn3", "dn3") != ""
        # a member that goes is forgotten at once
        host.exec("sdctr", "rm", "-f", "dn1")
        assert lookup(host, "dn2", "dn1") == "" and lookup(host, "dn2", "db") == ""
    finally:
        host.exec("sdctr", "rm", "-f", *names, check=False)
        host.exec("sdctr", "network", "rm", "named", "apart", check=False)
    assert dns_traces(host) == {"processes": [], "units": [], "files": []}
    assert_clean(host)


def test_without_dnsmasq_the_members_hosts_files_name_each_other(host: Machine) -> None:
    host.exec("sdctr", "network", "create", "hostsonly")
    host.exec("mv", "/usr/sbin/dnsmasq", "/usr/sbin/dnsmasq.hidden")
    try:
        host.exec("sdctr", "run", "-d", "--name", "ho1", "--network", "hostsonly", "busybox", "sleep", "600")
        host.exec("sdctr", "run", "-d", "--name", "ho2", "--network", "hostsonly", "busybox", "sleep", "600")
        assert host.exec("sdctr", "exec", "ho1", "ping", "-c", "1", "-W", "2", "ho2",
                         check=False).returncode == 0
        assert "\tho1 " in host.exec("sdctr", "exec", "ho2", "cat", "/etc/hosts").stdout
        assert dns_traces(host)["processes"] == []
    finally:
        host.exec("mv", "/usr/sbin/dnsmasq.hidden", "/usr/sbin/dnsmasq")
        host.exec("sdctr", "rm", "-f", "ho1", "ho2", check=False)
        host.exec("sdctr", "network", "rm", "hostsonly", check=False)
    assert_clean(host)


def test_gc_stops_the_dns_server_of_a_network_a_crash_removed(host: Machine) -> None:
    host.exec("sdctr", "network", "create", "crashed")
    host.exec("sdctr", "run", "--rm", "--network", "crashed", "busybox", "true")
    bridge = json.loads(host.exec("cat", "/var/lib/sdctr/netconf/crashed.json").stdout)["bridge"]
    assert len(dns_traces(host)["processes"]) == 1
    # `network rm` killed once the definition and the bridge went, before its DNS server did
    host.sh(f"rm -rf /var/lib/sdctr/netconf/crashed.json /var/lib/sdctr/networks/crashed*; "
            f"ip link del {bridge}")
    out = host.exec("sdctr", "system", "gc").stdout
    assert f"removed unit sdctr-dns-{bridge}.service" in out, out
    assert dns_traces(host) == {"processes": [], "units": [], "files": []}
    assert "0 left-overs removed" in host.exec("sdctr", "system", "gc").stdout


def test_network_connect_gives_a_running_container_eth1_and_disconnect_takes_it(host: Machine) -> None:
    host.exec("sdctr", "network", "create", "--subnet", "10.201.0.0/24", "side")
    try:
        host.exec("sdctr", "run", "-d", "--name", "cn1", "busybox", "sleep", "600")  # the default bridge
        host.exec("sdctr", "run", "-d", "--name", "cn2", "--network", "side", "busybox", "sleep", "600")
        host.exec("sdctr", "network", "connect", "side", "cn1")
        out = host.exec("sdctr", "exec", "cn1", "ip", "-4", "-o", "addr", "show", "eth1").stdout
        assert " 10.201.0." in out, out
        networks = inspect(host, "cn1")["NetworkSettings"]["Networks"]
        assert sorted(networks) == ["bridge", "side"] and networks["side"]["IPAddress"] in out, networks
        assert any(a.startswith("10.201.0.") for a in
                   host.sh("cat /var/lib/sdctr/networks/side/*").stdout.split()[:2])
        # both ways by name, through the hosts files the hooks refreshed
        for source, target in (("cn1", "cn2"), ("cn2", "cn1")):
            assert host.exec("sdctr", "exec", source, "ping", "-c", "1", "-W", "2", target,
                             check=False).returncode == 0, (source, target)
        r = host.exec("sdctr", "network", "connect", "side", "cn1", check=False)
        assert r.returncode == 1 and "is already connected to network side" in r.stderr, r.stderr
        host.exec("sdctr", "network", "disconnect", "side", "cn1")
        r = host.exec("sdctr", "exec", "cn1", "ip", "link", "show", "eth1", check=False)
        assert r.returncode != 0
        assert "cn1" not in host.exec("sdctr", "exec", "cn2", "cat", "/etc/hosts").stdout
        assert len(host.sh("ls /var/lib/sdctr/networks/side/").stdout.split()) == 1  # cn2's lease alone
        host.exec("sdctr", "network", "connect", "side", "cn1")
        r = host.exec("sdctr", "network", "rm", "side", check=False)
        assert r.returncode == 1 and "network side is in use by container" in r.stderr, r.stderr
        assert "cn1" in r.stderr.splitlines()[0], r.stderr  # connected, not its own network
        host.exec("sdctr", "restart", "cn1")  # kept across a restart, as Docker's
        out = host.exec("sdctr", "exec", "cn1", "ip", "-4", "-o", "addr", "show", "eth1").stdout
        assert " 10.201.0." in out, out
        assert host.exec("sdctr", "exec", "cn2", "ping", "-c", "1", "-W", "2", "cn1",
                         check=False).returncode == 0
        host.exec("sdctr", "stop", "cn1")  # a stop takes it down
        assert len(host.sh("ls /var/lib/sdctr/networks/side/").stdout.split()) == 1
    finally:
        host.exec("sdctr", "rm", "-f", "cn1", "cn2", check=False)
        host.exec("sdctr", "network", "rm", "side", check=False)
    assert "sd1" not in host.exec("ip", "-o", "link").stdout
    assert_clean(host)


def test_network_container_joins_a_running_one_and_stops_and_restarts_with_it(host: Machine) -> None:
    names = ("jweb", "jside", "jnone", "jidle")

    def sdctr(*args: str) -> subprocess.CompletedProcess[str]:
        return host.exec("sdctr", *args, check=False)

    def active(unit: str) -> bool:
        return host.exec("systemctl", "is-active", unit, check=False).stdout.strip() == "active"
    try:
        web = httpd(host, "--name", "jweb")
        host.exec("sdctr", "run", "-d", "--name", "jside", "--network", "container:jweb", "busybox",
                  "sleep", "600")
        unit, side = f"ctr-{web[:12]}.service", f"ctr-{inspect(host, 'jside')['Id'][:12]}.service"
        address = inspect(host, "jweb")["NetworkSettings"]["IPAddress"]
        # one namespace: jweb's address, its server on 127.0.0.1, its hostname and hosts file
        out = sdctr("exec", "jside", "sh", "-c", "ip -4 -o addr show eth0; hostname; cat /etc/hosts; "
                    "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 80").stdout
        assert f" {address}/16 " in out and f"{address}\t{web[:12]}" in out and PAGE in out, out
        assert out.splitlines()[1] == web[:12], out
        assert inspect(host, "jside")["HostConfig"]["NetworkMode"] == f"container:{web}"
        assert_one_each(host, web, elements=0)  # nothing of its own: no veth, lease or pin
        # restarted with it, into jweb's new namespace
        host.exec("systemctl", "restart", unit)  # (its own restart job may finish a moment later)
        wait_for(lambda: active(side), what="jside to come back with jweb")
        again = inspect(host, "jweb")["NetworkSettings"]["IPAddress"]
        assert f" {again}/16 " in sdctr("exec", "jside", "ip", "-4", "-o", "addr", "show", "eth0").stdout
        # stopped with it (its network would be gone), and not started without it
        host.exec("sdctr", "stop", "jweb")
        assert not active(side)
        r = sdctr("start", "jside")
        assert r.returncode == 1 and "--network container:jweb: container jweb is not running" in r.stderr
        host.exec("sdctr", "start", "jweb", "jside")
        host.exec("systemctl", "kill", "-s", "KILL", unit)  # kill -9 of jweb's processes: the same
        wait_for(lambda: not active(side), what="jside to stop with jweb")
        host.exec("sdctr", "start", "jweb", "jside")
        host.exec("sdctr", "rm", "-f", "jweb")
        wait_for(lambda: not active(side), what="jside to stop with jweb")
        r = sdctr("start", "jside")
        assert r.returncode == 1 and "whose network container jside joins, no longer exists" in r.stderr
        assert_clean(host)
        # bad input: one line, 125, nothing made
        host.exec("sdctr", "run", "-d", "--name", "jnone", "--network", "none", "busybox", "sleep", "600")
        host.exec("sdctr", "create", "--name", "jidle", "busybox", "sleep", "600")
        before = host.exec("sdctr", "ps", "-aq").stdout.split()
        for flags, message in (
                (["container:nosuch"], "--network container:nosuch: no such container"),
                (["container:jidle"], "--network container:jidle: container jidle is not running"),
                (["container:jnone"], "container jnone has --network none"),
                (["container:"], "--network 'container:' names no container"),
                (["container:jidle", "-h", "x"], "--hostname cannot be combined with --network container:"),
                (["container:jidle", "-p", "80"], "--publish needs a bridge network, not --network cont")):
            r = sdctr("run", "-d", "--network", *flags, "busybox", "true")
            lines = [ln for ln in r.stderr.splitlines() if ln.startswith("sdctr: error:")]
            assert r.returncode == 125 and len(lines) == 1 and message in lines[0], r.stderr
        assert host.exec("sdctr", "ps", "-aq").stdout.split() == before
    finally:
        host.exec("sdctr", "rm", "-f", *names, check=False)
    assert_clean(host)


def test_a_network_container_comes_back_with_its_target_restarted_by_its_own_restart_policy(
        host: Machine) -> None:
    def unit(name: str) -> str:
        return f"ctr-{inspect(host, name)['Id'][:12]}.service"

    def active(name: str) -> bool:
        return host.exec("systemctl", "is-active", unit(name), check=False).stdout.strip() == "active"

    def kill_main(name: str) -> None:  # the container's PID 1 dies: --restart always brings it back
        pid = host.exec("systemctl", "show", "-p", "MainPID", "--value", unit(name)).stdout.strip()
        host.exec("kill", "-9", pid)

    def restarts() -> int:
        return int(host.exec("systemctl", "show", "-p", "NRestarts", "--value", unit("fweb")).stdout)

    def netns(name: str) -> str:
        return host.exec("sdctr", "exec", name, "readlink", "/proc/self/ns/net").stdout.strip()  # type: ignore[no-any-return]
    try:
        host.exec("sdctr", "run", "-d", "--name", "fweb", "--restart", "always", "busybox", "sleep", "600")
        host.exec("sdctr", "run", "-d", "--name", "fside", "--network", "container:fweb", "busybox",
                  "sleep", "600")
        kill_main("fweb")
        wait_for(lambda: restarts() == 1 and active("fweb") and active("fside"),
                 what="fside to come back with fweb")
        assert netns("fside") == netns("fweb")  # in fweb's new namespace (the old one went with its stop)
        address = inspect(host, "fweb")["NetworkSettings"]["IPAddress"]
        assert f" {address}/" in host.exec("sdctr", "exec", "fside", "ip", "-4", "-o", "addr").stdout
        # stopped by hand, it stays stopped across fweb's next restart
        host.exec("sdctr", "stop", "fside")
        kill_main("fweb")
        wait_for(lambda: restarts() == 2 and active("fweb"), what="fweb's second restart")
        time.sleep(2)
        assert not active("fside")
    finally:
        host.exec("sdctr", "rm", "-f", "fside", "fweb", check=False)
    assert_clean(host)


def test_an_ipv6_network_gives_each_container_an_address_a_route_and_the_masquerade(host: Machine) -> None:
    host.sh("ip addr add fd00:198::1/64 dev sdtest0 nodad && "
            "ip -n outside addr add fd00:198::2/64 dev eth0 nodad")
    names = ("v1", "v2", "w1")
    try:
        host.exec("sdctr", "network", "create", "--ipv6", "--subnet", "fd00:90::/64", "--subnet",
                  "10.210.0.0/24", "six")
        host.exec("sdctr", "network", "create", "--ipv6", "--subnet", "fd00:91::/64", "six2")
        doc = json.loads(host.exec("sdctr", "network", "inspect", "six").stdout)[0]
        assert doc["EnableIPv6"], doc
        assert doc["IPAM"]["Config"][1] == {"Subnet": "fd00:90::/64", "Gateway": "fd00:90::1"}
        for name, network in zip(names, ("six", "six", "six2")):
            host.exec("sdctr", "run", "-d", "--name", name, "--network", network, "busybox",
                      "sleep", "600")
        settings = inspect(host, "v1")["NetworkSettings"]
        v1, v2 = settings["GlobalIPv6Address"], inspect(host, "v2")["NetworkSettings"]["GlobalIPv6Address"]
        w1 = inspect(host, "w1")["NetworkSettings"]["GlobalIPv6Address"]
        assert v1.startswith("fd00:90::") and v2.startswith("fd00:90::") and v1 != v2
        assert w1.startswith("fd00:91::")
        assert settings["IPv6Gateway"] == "fd00:90::1" and settings["GlobalIPv6PrefixLen"] == 64
        out = host.exec("sdctr", "exec", "v1", "sh", "-c", "ip -6 -o addr show eth0; ip -6 route").stdout
        assert f" {v1}/64 " in out and "default via fd00:90::1 dev eth0" in out, out

        def pings(source: str, target: str) -> bool:
            return host.exec("sdctr", "exec", source, "ping", "-c", "1", "-W", "2", target,
                             check=False).returncode == 0
        # the gateway and the other member by address and by name; not across networks
        assert pings("v1", "fd00:90::1") and pings("v1", v2)
        assert v2 in answers(host, "v1", "v2")  # (its AAAA record, from the network's DNS server)
        assert not pings("v1", w1)
        # out through the masquerade: "outside" has no route back to fd00:90::/64, and sees the host
        peer6 = outside_server(host, "fd00:198::2", 9006)
        host.exec("sdctr", "exec", "v1", "sh", "-c", "echo hi | nc -w 3 fd00:198::2 9006", check=False)
        assert peer6() == "fd00:198::1"
        # bad input: one line, 125, nothing made
        before = host.exec("sdctr", "network", "ls").stdout
        for flags, message in (
                (["--ipv6"], "--ipv6 needs an IPv6 --subnet"),
                (["--subnet", "fd00:92::/64"], "--subnet fd00:92::/64 is IPv6: add --ipv6"),
                (["--ipv6", "--subnet", "fd00:90:0:0:1::/80"], "overlaps network six's fd00:90::/64"),
                (["--ipv6", "--subnet", "fd00:93::/120"], "is too small for the IPv4 subnet"),
                (["--ipv6", "--subnet", "fd00:93::1/64"], "is not an IPv6 subnet"),
                (["--ipv6", "--subnet", "fd00:198::/64"], "overlaps the host's route fd00:198::/64")):
            r = host.exec("sdctr", "network", "create", *flags, "bad6", check=False)
            lines = [ln for ln in r.stderr.splitlines() if ln.startswith("sdctr: error:")]
            assert r.returncode == 125 and len(lines) == 1 and message in lines[0], r.stderr
        assert host.exec("sdctr", "network", "ls").stdout == before
    finally:
        host.exec("sdctr", "rm", "-f", *names, check=False)
        host.exec("sdctr", "network", "rm", "six", "six2", check=False)
        host.sh("ip addr del fd00:198::1/64 dev sdtest0; ip -n outside addr del fd00:198::2/64 dev eth0",
                check=False)
    # the IPv6 table goes with the last IPv6 network, and gc takes one a killed `network rm` left
    assert "table ip6 sdctr" not in host.exec("nft", "list", "tables").stdout
    host.exec("nft", "add", "table", "ip6", "sdctr")
    assert "nft table ip6 sdctr (no IPv6 network left)" in host.exec("sdctr", "system", "gc").stdout
    assert "table ip6 sdctr" not in host.exec("nft", "list", "tables").stdout
    assert_clean(host)


def test_network_connect_of_a_stopped_container_is_applied_at_its_next_start(host: Machine) -> None:
    host.exec("sdctr", "network", "create", "--subnet", "10.203.0.0/24", "later")
    try:
        host.exec("sdctr", "create", "--name", "st1", "busybox", "sleep", "600")
        host.exec("sdctr", "network", "connect", "later", "st1")  # recorded, as Docker's
        assert inspect(host, "st1")["NetworkSettings"]["Networks"]["later"]["IPAddress"] == ""
        assert host.sh("ls /var/lib/sdctr/networks/later 2>/dev/null || true").stdout.split() == []
        r = host.exec("sdctr", "network", "connect", "later", "st1", check=False)
        assert r.returncode == 1 and "is already connected to network later" in r.stderr, r.stderr
        r = host.exec("sdctr", "network", "rm", "later", check=False)
        assert r.returncode == 1 and "network later is in use by container st1" in r.stderr, r.stderr
        host.exec("sdctr", "start", "st1")
        out = host.exec("sdctr", "exec", "st1", "ip", "-4", "-o", "addr", "show", "eth1").stdout
        address = inspect(host, "st1")["NetworkSettings"]["Networks"]["later"]["IPAddress"]
        assert address.startswith("10.203.0.") and f" {address}/24 " in out, out
        # disconnected while stopped: the next start has no eth1
        host.exec("sdctr", "stop", "st1")
        host.exec("sdctr", "network", "disconnect", "later", "st1")
        host.exec("sdctr", "start", "st1")
        assert host.exec("sdctr", "exec", "st1", "ip", "link", "show", "eth1", check=False).returncode != 0
        assert sorted(inspect(host, "st1")["NetworkSettings"]["Networks"]) == ["bridge"]
        # a container on the host's network has no bridge to connect
        host.exec("sdctr", "create", "--name", "st2", "--network", "host", "busybox", "true")
        for verb in ("connect", "disconnect"):
            r = host.exec("sdctr", "network", verb, "later", "st2", check=False)
            assert r.returncode == 1 and "container st2 has --network host, not a bridge network" in r.stderr
    finally:
        host.exec("sdctr", "rm", "-f", "st1", "st2", check=False)
        host.exec("sdctr", "network", "rm", "later", check=False)
    assert_clean(host)
