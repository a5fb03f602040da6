"""The pure parts of sdctr.net: addresses (ipam), the nftables text, resolv.conf and hosts, the
route-overlap check; and the unit's network hooks in its properties."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest

from sdctr.log import SdctrError
from sdctr.net import dns, ipam, nft
from sdctr.net.network import overlapping_route
from sdctr.spec import ContainerSpec, NetworkMode, Port
from sdctr.systemd.properties import Host, properties, unit_file

pytestmark = pytest.mark.unit

SUBNET = ipam.Subnet.parse("10.89.0.0/16")
GW = ipam.parse_ip("10.89.0.1")


def ip(text: str) -> int:
    return ipam.parse_ip(text)


def test_subnets_parse_and_refuse_host_bits() -> None:
    assert SUBNET.text == "10.89.0.0/16" and SUBNET.broadcast == ip("10.89.255.255")
    with pytest.raises(ValueError, match=re.escape("did you mean 10.89.0.0/16")):
        ipam.Subnet.parse("10.89.0.1/16")
    for bad in ("10.89.0.0", "10.89.0.0/33", "10.300.0.0/16", "x/16"):
        with pytest.raises(ValueError):
            ipam.Subnet.parse(bad)
    assert SUBNET.overlaps(ipam.Subnet.parse("10.89.3.0/24"))
    assert ipam.Subnet.parse("10.0.0.0/8").overlaps(SUBNET)
    assert not SUBNET.overlaps(ipam.Subnet.parse("10.90.0.0/16"))


def test_pick_skips_gateway_and_taken_and_wraps_after_last() -> None:
    assert ipam.pick(SUBNET, GW, set()) == ip("10.89.0.2")
    assert ipam.pick(SUBNET, GW, {ip("10.89.0.2")}) == ip("10.89.0.3")
    # after the last one handed out, not the lowest free: a released address is not reused at once
    assert ipam.pick(SUBNET, GW, set(), last=ip("10.89.0.9")) == ip("10.89.0.10")
    small = ipam.Subnet.parse("192.168.5.0/30")  # .1 gateway, .2 the only host address
    gw = ip("192.168.5.1")
    assert ipam.pick(small, gw, set(), last=ip("192.168.5.2")) == ip("192.168.5.2")  # wraps
    with pytest.raises(SdctrError, match=re.escape("no free address left in 192.168.5.0/30")):
        ipam.pick(small, gw, {ip("192.168.5.2")})


@pytest.mark.parametrize(("requested", "message"), [
    ("10.90.0.5", "is not a host address of the network's subnet 10.89.0.0/16"),
    ("10.89.255.255", "is not a host address"), ("10.89.0.1", "is the network's gateway"),
    ("10.89.0.7", "already in use")])
def test_a_requested_address_is_checked(requested: str, message: str) -> None:
    with pytest.raises(SdctrError, match=message):
        ipam.pick(SUBNET, GW, {ip("10.89.0.7")}, requested=ip(requested))
    assert ipam.pick(SUBNET, GW, {ip("10.89.0.7")}, requested=ip("10.89.0.8")) == ip("10.89.0.8")


def test_leases_persist_release_and_keep_an_address_per_container(tmp_path: Path) -> None:
    path = tmp_path / "networks" / "bridge"
    with ipam.Leases.open(path) as leases:
        a = leases.lease("a" * 64, SUBNET, GW)
        assert leases.lease("a" * 64, SUBNET, GW) == a  # a restart keeps its address
        b = leases.lease("b" * 64, SUBNET, GW)
    assert a != b and ipam.lease_of(path, "b" * 64) == ipam.format_ip(b)
    with ipam.Leases.open(path) as leases:
        assert leases.release("a" * 64) == ipam.format_ip(a)
    # one file per container, as sdctr/netup.sh and netdown.sh read and remove them
    assert sorted(os.listdir(path)) == [".last", "b" * 64]
    assert (path / ("b" * 64)).read_text() == "10.89.0.3\n" and ipam.read(path) == {"b" * 64: "10.89.0.3"}
    with ipam.Leases.open(path) as leases:  # the next one follows the last, not the freed .2
        assert leases.lease("c" * 64, SUBNET, GW) == ip("10.89.0.4")


def test_the_one_file_format_before_is_moved_into_the_directory(tmp_path: Path) -> None:
    before = {"last": "10.89.0.9", "leases": {"a" * 64: "10.89.0.9"}}
    (tmp_path / "bridge.json").write_text(json.dumps(before))
    with ipam.Leases.open(tmp_path / "bridge") as leases:
        assert leases.leases == {"a" * 64: "10.89.0.9"}
        assert leases.lease("b" * 64, SUBNET, GW) == ip("10.89.0.10")
    assert not (tmp_path / "bridge.json").exists()


def test_concurrent_leases_are_distinct(tmp_path: Path) -> None:
    path = tmp_path / "bridge"
    got: list[int] = []

    def take(n: int) -> None:
        with ipam.Leases.open(path) as leases:
            got.append(leases.lease(f"{n:064x}", SUBNET, GW))
    threads = [threading.Thread(target=take, args=(n,)) for n in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 30 and len(ipam.read(path)) == 30


def test_the_table_text_declares_once_and_refills_its_chains() -> None:
    text = nft.table_text([nft.NetRules("bridge", "sdctr0", "10.89.0.0/16")])
    assert text.startswith("table ip sdctr {\n")
    assert [ln for ln in text.splitlines() if ln.startswith("flush chain")] == [
        "flush chain ip sdctr prerouting", "flush chain ip sdctr output", "flush chain ip sdctr postrouting",
        "flush chain ip sdctr forward"]
    assert " drop " not in text  # one network: nothing to keep apart
    two = nft.table_text([nft.NetRules("bridge", "sdctr0", "10.89.0.0/16"),
                          nft.NetRules("web", "sdbr1", "10.90.0.0/16")])
    assert [ln for ln in two.splitlines() if " drop " in ln] == [
        'add rule ip sdctr forward iifname "sdctr0" oifname "sdbr1" drop comment "network bridge"',
        'add rule ip sdctr forward iifname "sdbr1" oifname "sdctr0" drop comment "network web"']
    assert 'ip saddr 10.90.0.0/16 oifname != "sdbr1" masquerade' in two
    assert ('add rule ip sdctr postrouting ip saddr 10.89.0.0/16 oifname != "sdctr0" masquerade '
            'comment "network bridge"') in text
    assert 'ip saddr 127.0.0.0/8 oifname "sdctr0" masquerade' in text
    assert text.count("fib daddr type local dnat ip to meta l4proto . th dport map @ports") == 2


def test_every_port_element_carries_the_container_id() -> None:
    cid = "f" * 64
    text = nft.add_ports_text(cid, "10.89.0.5", [Port(8080, 80), Port(5353, 53, "udp", "192.0.2.1")])
    assert text == (f'add element ip sdctr ports {{ tcp . 8080 comment "{cid}" : 10.89.0.5 . 80 }}\n'
                    f'add element ip sdctr ports_ip {{ 192.0.2.1 . udp . 5353 comment "{cid}" : '
                    '10.89.0.5 . 53 }\n')


def test_elements_are_read_back_from_a_listing_and_deleted_by_key() -> None:
    listing = {"nftables": [{"metainfo": {}}, {"map": {
        "family": "ip", "name": "ports", "table": "sdctr",
        "elem": [[{"elem": {"val": {"concat": ["tcp", 8080]}, "comment": "abc"}},
                  {"concat": ["10.89.0.5", 80]}],
                 [{"elem": {"val": {"concat": ["udp", 53]}, "comment": "def"}},
                  {"concat": ["10.89.0.6", 53]}]]}},
        {"map": {"family": "ip", "name": "ports_ip", "table": "sdctr"}}]}
    found = nft.elements(listing)
    assert found == [nft.Element("ports", "tcp . 8080", "abc"), nft.Element("ports", "udp . 53", "def")]
    assert nft.delete_elements_text(found[:1]) == "delete element ip sdctr ports { tcp . 8080 }\n"


def test_resolv_conf_replaces_a_loopback_stub_with_its_upstream() -> None:
    host = "# managed\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n"
    upstream = "nameserver 192.0.2.53\nnameserver 127.0.0.1\nnameserver 198.51.100.1\n"
    text = dns.resolv_conf(host, upstream)
    assert [ln for ln in text.splitlines() if ln.startswith("nameserver")] == [
        "nameserver 192.0.2.53", "nameserver 198.51.100.1"]
    assert "options edns0 trust-ad" in text and "search lan" in text and "127.0." not in text
    assert "nameserver 8.8.8.8" in dns.resolv_conf(host, None)  # Docker's fallback
    plain = "nameserver 192.0.2.1\n"
    assert dns.resolv_conf(plain) == plain
    assert dns.hosts("web", "10.89.0.5").splitlines()[-1] == "10.89.0.5\tweb"


def test_a_user_networks_dns_server_is_dnsmasq_on_its_gateway_alone(tmp_path: Path) -> None:
    from sdctr.net import dnsserver, setup
    from sdctr.net.network import Network, default_network

    net = Network("web", "sdbr0123456789a", ipam.Subnet.parse("10.90.0.0/16"), ip("10.90.0.1"),
                  ipam.Subnet6.parse("fd00:90::/64"))
    from sdctr.paths import Paths

    assert Paths(Path("/var/lib/sdctr"), Path("/run/sdctr")).dns == Path("/run/sdctr-dns")
    assert Paths.from_root(str(tmp_path)).dns == tmp_path / "dns"  # inside a moved root
    paths = Paths(Path("/var/lib/sdctr"), Path("/run/sdctr"))
    argv = dnsserver.command(paths, net, "/usr/sbin/dnsmasq")
    # the gateway's addresses alone (not the host's loopback, not every interface), no
    # configuration file of the host's, the hosts file the hooks keep, plain names never forwarded
    assert [a for a in argv if a.startswith("--listen-address")] == [
        "--listen-address=10.90.0.1", "--listen-address=fd00:90::1"]
    assert {"--conf-file=/dev/null", "--bind-interfaces", "--no-hosts", "--domain-needed",
            "--addn-hosts=/run/sdctr-dns/sdbr0123456789a.hosts"} <= set(argv)
    props = dict((name, value) for name, _, value in dnsserver.properties(paths, net, "/usr/sbin/dnsmasq"))
    assert props["Type"] == "forking" and props["PIDFile"] == "/run/sdctr-dns/sdbr0123456789a.pid"
    assert props["ExecStart"] == [("/usr/sbin/dnsmasq", argv, False)]
    assert dnsserver.unit_name(net.bridge) == "sdctr-dns-sdbr0123456789a.service"
    assert dnsserver.hosts_text([("10.90.0.2", "a1 0123456789ab db")]) == "10.90.0.2\ta1 0123456789ab db\n"
    # where dnsmasq is installed, for user networks only (Docker's `bridge` has no names)
    (tmp_path / "dnsmasq").write_text("")
    (tmp_path / "dnsmasq").chmod(0o755)
    assert setup.dns_server(net, [str(tmp_path)]) == f"{tmp_path}/dnsmasq"
    assert setup.dns_server(net, ["/nonexistent"]) == ""
    assert setup.dns_server(default_network(), [str(tmp_path)]) == ""


def test_a_resolv_conf_through_the_networks_server_keeps_search_and_options() -> None:
    host = "# managed\nnameserver 192.0.2.53\nsearch lan\noptions ndots:2\nnameserver 192.0.2.54\n"
    text = dns.via_server(host, "10.90.0.1", "sdctr-dns-sdbr0123456789a.service")
    assert text.splitlines()[1:] == ["nameserver 10.90.0.1", "search lan", "options ndots:2"], text
    assert "sdctr-dns-sdbr0123456789a.service" in text.splitlines()[0]


def test_a_subnet_overlapping_a_host_route_is_found() -> None:
    routes = [{"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
              {"dst": "10.89.0.0/16", "dev": "sdctr0"},  # our own bridge's
              {"dst": "192.0.2.0/24", "dev": "eth0"}, {"dst": "10.0.0.0/8", "dev": "wg0"}]
    assert overlapping_route(SUBNET, routes, "sdctr0") == "10.0.0.0/8 dev wg0"
    assert overlapping_route(SUBNET, routes[:3], "sdctr0") is None
    assert overlapping_route(SUBNET, [{"dst": "10.89.7.7", "dev": "tun0"}], "sdctr0") == "10.89.7.7 dev tun0"


def _spec(network: NetworkMode) -> ContainerSpec:
    return ContainerSpec(id="e" * 64, name="web", image="busybox", image_id="sha256:x",
                         command=("httpd",), network=network, ports=(Port(8080, 80),))


def test_a_bridge_container_sets_up_its_network_before_the_init_and_tears_it_down_first() -> None:
    props = dict((n, v) for n, _, v in properties(_spec(NetworkMode.BRIDGE), Host(2, 252), ["sdctr"],
                                                  prestart=["/bin/mount", "x"]))
    assert [argv for _, argv, _ in props["ExecStartPre"]] == [["/bin/mount", "x"],
                                                            ["sdctr", "hook", "netup", "e" * 64]]
    # the shell scripts, where given, with the hook's argv to hand over to
    scripts = dict((n, v) for n, _, v in properties(_spec(NetworkMode.BRIDGE), Host(2, 252), ["sdctr"],
                                                    network=(["sh", "up.sh"], ["sh", "down.sh"])))
    assert scripts["ExecStartPre"][-1] == ("sh", ["sh", "up.sh", "sdctr", "hook", "netup", "e" * 64], False)
    assert scripts["ExecStopPost"][0] == ("sh", ["sh", "down.sh", "sdctr", "hook", "netdown", "e" * 64], True)
    assert props["ExecStopPost"][0] == ("sdctr", ["sdctr", "hook", "netdown", "e" * 64], True)
    assert props["ExecStopPost"][1][1][-2:] == ["poststop", "e" * 64]
    text = unit_file(properties(_spec(NetworkMode.BRIDGE), Host(2, 219), ["sdctr"]))
    assert f"ExecStartPre=sdctr hook netup {'e' * 64}" in text
    assert f"ExecStopPost=-sdctr hook netdown {'e' * 64}" in text
    none = dict((n, v) for n, _, v in properties(_spec(NetworkMode.NONE), Host(2, 252), ["sdctr"]))
    assert len(none["ExecStartPre"]) == 1 and len(none["ExecStopPost"]) == 1


def test_ports_survive_the_record() -> None:
    spec = _spec(NetworkMode.BRIDGE).replace(ip="10.89.0.9")
    assert ContainerSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


def test_a_host_without_nft_is_told_before_anything_is_made(tmp_path: Path) -> None:
    from sdctr.net.setup import require_tools

    (tmp_path / "ip").write_text("")
    (tmp_path / "ip").chmod(0o755)
    with pytest.raises(SdctrError, match=r"^the bridge network needs nft or iptables, which this host "
                                         r"lacks \(package nftables or iptables\)$") as e:
        require_tools([str(tmp_path)])
    assert "--network none" in (e.value.hint or "")
    for tool in ("iptables", "nft"):  # either serves
        (tmp_path / tool).write_text("")
        (tmp_path / tool).chmod(0o755)
        require_tools([str(tmp_path)])
        (tmp_path / tool).unlink()


def test_user_networks_take_free_subnets_from_the_pool_and_refuse_overlaps(tmp_path: Path) -> None:
    from sdctr.net.network import create_network, network_named, user_networks
    from sdctr.paths import Paths

    paths = Paths.from_root(str(tmp_path))
    routes = [{"dst": "10.91.4.0/24", "dev": "eth9"}]  # a host route: its /16 is passed over
    assert create_network(paths, "front", None, None, routes).subnet.text == "10.90.0.0/16"
    back = create_network(paths, "back", None, None, routes)
    assert back.subnet.text == "10.92.0.0/16" and back.gateway_text == "10.92.0.1"
    assert back.bridge.startswith("sdbr") and len(back.bridge) == 15
    mine = create_network(paths, "mine", "10.200.0.0/24", "10.200.0.254", routes)
    assert network_named(paths, "mine") == mine and mine.gateway_text == "10.200.0.254"
    assert [n.name for n in user_networks(paths)] == ["back", "front", "mine"]
    for name, subnet, gateway, message in [
            ("front", None, None, "network front already exists"),
            ("x", "10.89.128.0/24", None, "overlaps network bridge's 10.89.0.0/16"),
            ("x", "10.91.0.0/16", None, "overlaps the host's route 10.91.4.0/24 dev eth9"),
            ("x", "10.201.0.0/24", "10.202.0.1", "is not a host address of 10.201.0.0/24"),
            ("x", "10.201.0.1/24", None, "has host bits set")]:
        with pytest.raises(SdctrError, match=re.escape(message)):
            create_network(paths, name, subnet, gateway, routes)
    with pytest.raises(SdctrError, match="--network 'nosuch': no such network"):
        network_named(paths, "nosuch")


def test_a_user_networks_hosts_name_its_other_members() -> None:
    assert dns.hosts("a1", "10.90.0.2", [("10.90.0.3", "b1 0123456789ab")]).splitlines()[2:] == [
        "10.90.0.2\ta1", "10.90.0.3\tb1 0123456789ab"]


def test_etc_files_never_recreate_a_removed_record(tmp_path: Path) -> None:
    """The netup hook writes hosts and resolv.conf into the record directory: one that `rm`
    removed meanwhile is a one-line error, not a directory without a config (seen before: the
    hook made it again with mkdir -p). What it writes is 0644 whatever the umask."""
    from sdctr.net.setup import write_file

    record = tmp_path / "containers" / ("a" * 64)
    with pytest.raises(SdctrError, match="was removed while it started"):
        write_file(record, "hosts", "127.0.0.1\tlocalhost\n")
    assert not record.exists()
    record.mkdir(parents=True)
    old = os.umask(0o077)
    try:
        write_file(record, "hosts", "127.0.0.1\tlocalhost\n")
    finally:
        os.umask(old)
    assert (record / "hosts").read_text() == "127.0.0.1\tlocalhost\n"
    assert (record / "hosts").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in record.iterdir()] == ["hosts"]


def test_network_container_parses_refuses_what_it_would_share_and_binds_its_unit() -> None:
    from sdctr.options import run_options

    options = run_options({"image": "busybox", "network": "container:web"})
    assert (options.network, options.network_name) == (NetworkMode.CONTAINER, "web")
    for key, value, flag in (("hostname", "h", "--hostname"), ("dns", ["192.0.2.1"], "--dns"),
                             ("add_hosts", ["db:10.1.2.3"], "--add-host"),
                             ("publish", ["8080:80"], "--publish"),
                             ("network_aliases", ["db"], "--network-alias")):
        with pytest.raises(SdctrError, match=f"^{flag} ") as e:
            run_options({"image": "busybox", "network": "container:web", key: value})
        assert e.value.status == 125
    with pytest.raises(SdctrError, match="'container:' names no container"):
        run_options({"image": "busybox", "network": "container:"})
    spec = _spec(NetworkMode.CONTAINER).replace(ports=(), network_container="f" * 64)
    assert ContainerSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert spec.network_mode == "container:" + "f" * 64
    props = dict((n, v) for n, _, v in properties(spec, Host(2, 252), ["sdctr"], joins="ctr-ffff.service"))
    assert props["BindsTo"] == props["After"] == ["ctr-ffff.service"]
    assert len(props["ExecStartPre"]) == 1 and len(props["ExecStopPost"]) == 1  # no netup, no netdown
    assert "BindsTo" not in dict((n, v) for n, _, v in properties(spec, Host(2, 252), ["sdctr"]))


def test_ipv6_addresses_follow_the_ipv4_lease_and_subnets_are_checked() -> None:
    six = ipam.Subnet6.parse("fd00:90::/64")
    v4 = ipam.Subnet.parse("10.90.0.0/16")
    assert six.text == "fd00:90::/64" and six.fits(v4) and not ipam.Subnet6.parse("fd00:90::/120").fits(v4)
    assert ipam.format_ip6(six.address(v4, ip("10.90.1.7"))) == "fd00:90::107"
    assert six.overlaps(ipam.Subnet6.parse("fd00:90:0:0:1::/80"))
    assert not six.overlaps(ipam.Subnet6.parse("fd00:91::/64"))
    for bad in ("fd00:90::1/64", "fd00:90::", "10.0.0.0/8", "fd00:zz::/64"):
        with pytest.raises(ValueError):
            ipam.Subnet6.parse(bad)


def test_the_ipv6_table_masquerades_and_isolates_and_goes_with_the_last_ipv6_network() -> None:
    rules = [nft.NetRules("bridge", "sdctr0", "10.89.0.0/16"),
             nft.NetRules("six", "sdbr1", "10.90.0.0/16", "fd00:90::/64")]
    text = nft.table6_text(rules)
    assert 'add rule ip6 sdctr postrouting ip6 saddr fd00:90::/64 oifname != "sdbr1" masquerade' in text
    assert 'forward iifname "sdctr0" oifname "sdbr1" drop' in text and "flush chain ip6 sdctr forward" in text
    assert nft.table6_text(rules[:1]) == ""
    assert nft.delete_table6_text() == "table ip6 sdctr { }\ndelete table ip6 sdctr\n"


@pytest.mark.parametrize(("given", "ipv6", "message"), [
    (["fd00::/64"], False, "--subnet fd00::/64 is IPv6: add --ipv6"),
    ([], True, "--ipv6 needs an IPv6 --subnet"),
    (["10.1.0.0/16", "10.2.0.0/16"], False, "one IPv4 and one IPv6 subnet at most"),
])
def test_network_create_tells_the_subnets_apart(given: list[str], ipv6: bool, message: str) -> None:
    from sdctr.cli.networks import split_subnets

    with pytest.raises(SdctrError, match=re.escape(message)):
        split_subnets(given, ipv6)
    assert split_subnets(["fd00::/64", "10.1.0.0/16"], True) == ("10.1.0.0/16", "fd00::/64")


def test_a_declared_container_refuses_network_container_for_now() -> None:
    from sdctr.options import run_options
    from sdctr.systemd.generator import declared_spec

    with pytest.raises(SdctrError, match="network: container:web is for `sdctr run` only so far"):
        declared_spec(run_options({"image": "busybox", "network": "container:web"},
                                  yaml=True))


def test_gc_stops_the_dns_servers_of_gone_networks_of_its_own_root_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit names are host-wide: a test root's gc must not stop the real root's DNS servers."""
    from sdctr.net import dnsserver
    from sdctr.paths import Paths
    from sdctr.systemd import manager

    stopped: list[str] = []

    class FakeSystemd:
        def active_states(self, pattern: str) -> dict[str, str]:
            return {dnsserver.unit_name(b): "active" for b in ("sdbrgone", "sdbrother", "sdbrknown")}

        def stop(self, unit: str) -> None:
            stopped.append(unit)

    monkeypatch.setattr(manager, "Systemd", FakeSystemd)
    paths = Paths.from_root(str(tmp_path))
    dnsserver.write_hosts(paths, "sdbrgone", [])  # this root's, its network gone
    dnsserver.write_hosts(paths, "sdbrknown", [])
    removed = dnsserver.gc(paths, ["sdbrknown"])
    assert stopped == ["sdctr-dns-sdbrgone.service"]  # not sdbrother's: another root's
    assert removed == ["unit sdctr-dns-sdbrgone.service"]
    assert sorted(p.name for p in paths.dns.iterdir()) == ["sdbrknown.hosts"]
