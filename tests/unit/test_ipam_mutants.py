"""IPAM edges, sharpened where tests/mutation found mutants that nothing noticed: the usable
range's ends, wrapping after the last lease, the /30 limit, the exact refusals."""

from __future__ import annotations

import pytest

from sdctr.log import SdctrError
from sdctr.net.ipam import Subnet, parse_ip, pick


def test_parse_ip_edges() -> None:
    assert parse_ip("255.255.255.255") == 0xFFFFFFFF
    for bad in ("256.0.0.1", "1.2.3.0001", "1.2.3"):
        with pytest.raises(ValueError, match=rf"^'{bad}' is not an IPv4 address$"):
            parse_ip(bad)


def test_subnet_prefix_limits() -> None:
    assert Subnet.parse("10.0.0.0/30").prefix == 30
    for bad in ("10.0.0.0/31", "10.0.0.0/7", "10.0.0.0", "10.0.0.0/x", "10.0.0.0/24/1"):
        with pytest.raises(ValueError, match=r"is not an IPv4 subnet with a prefix length of 8 to 30$"):
            Subnet.parse(bad)


def test_the_first_host_address_is_handed_out() -> None:
    net = Subnet.parse("10.0.0.0/29")  # hosts .1 to .6
    assert pick(net, parse_ip("10.0.0.6"), set()) == parse_ip("10.0.0.1")


def test_after_the_last_lease_and_around() -> None:
    net = Subnet.parse("10.0.0.0/29")
    gw = parse_ip("10.0.0.1")
    assert pick(net, gw, set(), last=parse_ip("10.0.0.1")) == parse_ip("10.0.0.2")
    assert pick(net, gw, set(), last=parse_ip("10.0.0.6")) == parse_ip("10.0.0.2")
    taken = {parse_ip(f"10.0.0.{i}") for i in (4, 5, 6)}
    assert pick(net, gw, taken, last=parse_ip("10.0.0.4")) == parse_ip("10.0.0.2")


def test_a_full_subnet_says_what_to_do() -> None:
    net = Subnet.parse("10.0.0.0/30")
    with pytest.raises(SdctrError) as e:
        pick(net, parse_ip("10.0.0.1"), {parse_ip("10.0.0.2")})
    assert (str(e.value), e.value.hint) == ("no free address left in 10.0.0.0/30",
                                            "remove stopped containers, or configure a larger subnet")
