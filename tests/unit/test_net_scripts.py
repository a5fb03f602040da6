"""sdctr/netup.sh's address choice and hand-overs, and sdctr/netdown.sh's release, against the
same lease directory sdctr.net.ipam keeps: the shell must pick what ipam.pick picks. Nothing is
made on the network: `unshare` is a fake that fails, so the script hands over to its "hook"
(a command that writes down it ran) right after taking the lease."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import require_exec

from sdctr.net import ipam
from sdctr.paths import NETDOWN_SCRIPT, NETUP_SCRIPT

pytestmark = pytest.mark.unit

SUBNET = ipam.Subnet.parse("10.89.0.0/16")
GW = ipam.parse_ip("10.89.0.1")
CID = "c" * 64


def netup(tmp: Path, leases: Path, requested: str = "", subnet: ipam.Subnet = SUBNET,
          gateway: int = GW) -> str:
    """The script run up to the namespace; what the hook saw ("" if it was not called)."""
    sysfs = tmp / "sys"  # the "bridge" is a directory of ours: /sys/class/net/../../../<tmp>/sys/br
    (sysfs / "br" / "bridge").mkdir(parents=True, exist_ok=True)
    bridge = "../../.." + str(sysfs / "br")
    fake = tmp / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "unshare").write_text("#!/bin/sh\nexit 1\n")
    (fake / "unshare").chmod(0o755)
    (tmp / "netns").mkdir(exist_ok=True)
    handed = tmp / "handed-over"
    handed.unlink(missing_ok=True)
    argv = ["/bin/sh", NETUP_SCRIPT, CID, str(leases), bridge, str(subnet.prefix), str(gateway),
            str(subnet.network + 1), str(subnet.broadcast - 1),
            str(ipam.parse_ip(requested)) if requested else "", str(tmp / "netns" / CID), str(tmp / "hosts"),
            "host", "/bin/sh", "-c", f"echo \"$*\" > {handed}", "hook", "netup", CID]
    r = subprocess.run(argv, env={"PATH": f"{fake}:/usr/sbin:/usr/bin:/sbin:/bin"}, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return handed.read_text().strip() if handed.exists() else ""


def held(leases: Path) -> dict[str, str]:
    with ipam.Leases.open(leases) as now:
        return dict(now.leases)


@pytest.fixture
def leases(tmp_path: Path) -> Path:
    require_exec(tmp_path)
    path = tmp_path / "networks" / "bridge"
    with ipam.Leases.open(path) as ls:
        ls.lease("a" * 64, SUBNET, GW)  # 10.89.0.2
        ls.lease("b" * 64, SUBNET, GW)  # 10.89.0.3
        ls.release("a" * 64)  # .2 free again, .last .3
    return path


def test_the_script_takes_what_ipam_would(tmp_path: Path, leases: Path) -> None:
    with ipam.Leases.open(leases) as ls:
        expected = ipam.pick(SUBNET, GW, {ipam.parse_ip(a) for a in ls.leases.values()},
                             ipam.parse_ip(ls.last) if ls.last else None)
    assert netup(tmp_path, leases) == f"netup {CID}"  # the fake unshare failed: handed over
    assert held(leases)[CID] == ipam.format_ip(expected) == "10.89.0.4"  # after .last, not the freed .2
    assert (leases / ".last").read_text() == "10.89.0.4\n"


def test_it_wraps_around_and_skips_the_gateway_and_what_is_held(tmp_path: Path) -> None:
    require_exec(tmp_path)
    small = ipam.Subnet.parse("10.90.0.0/29")  # hosts .1-.6, gateway .1
    leases = tmp_path / "small"
    with ipam.Leases.open(leases) as ls:
        for cid in "def":
            ls.lease(cid * 64, small, small.first_host)  # .2 .3 .4
        ls.release("e" * 64)  # .3 free
        ls.last = None
    (leases / ".last").write_text("10.90.0.6\n")  # the last one handed out was the highest
    netup(tmp_path, leases, subnet=small, gateway=small.first_host)
    assert held(leases)[CID] == "10.90.0.3"  # round to .1 (the gateway), .2 (held), then .3


@pytest.mark.parametrize("requested", ["10.89.0.3", "10.89.0.1", "10.90.0.5"])
def test_a_requested_address_that_is_not_free_is_the_hooks_to_refuse(tmp_path: Path, leases: Path,
                                                                      requested: str) -> None:
    assert netup(tmp_path, leases, requested) == f"netup {CID}"
    assert CID not in held(leases)  # nothing taken: the hook says why (taken, the gateway, outside)


def test_a_free_requested_address_is_taken(tmp_path: Path, leases: Path) -> None:
    netup(tmp_path, leases, "10.89.0.200")
    assert held(leases)[CID] == "10.89.0.200"


def test_a_full_subnet_and_a_left_over_lease_are_the_hooks(tmp_path: Path) -> None:
    require_exec(tmp_path)
    tiny = ipam.Subnet.parse("10.91.0.0/30")  # hosts .1 (gateway) and .2
    leases = tmp_path / "tiny"
    with ipam.Leases.open(leases) as ls:
        ls.lease("d" * 64, tiny, tiny.first_host)
    assert netup(tmp_path, leases, subnet=tiny, gateway=tiny.first_host) == f"netup {CID}"
    assert CID not in held(leases)
    with ipam.Leases.open(leases) as ls:
        ls.release("d" * 64)
        ls.lease(CID, tiny, tiny.first_host)  # as an earlier start left it
    before = os.stat(leases / CID).st_mtime_ns
    assert netup(tmp_path, leases, subnet=tiny, gateway=tiny.first_host) == f"netup {CID}"
    assert os.stat(leases / CID).st_mtime_ns == before  # untouched: the hook takes it down first


def test_netdown_releases_the_lease_and_the_pin(tmp_path: Path, leases: Path) -> None:
    pin = tmp_path / "pin"
    pin.write_text("")
    r = subprocess.run(["/bin/sh", NETDOWN_SCRIPT, "sdvnosuchveth00", str(leases / ("b" * 64)), str(pin),
                        "/bin/sh", "-c", "echo handed over"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "handed over" not in r.stdout, r
    assert held(leases) == {} and not pin.exists()


@pytest.mark.parametrize(("previous", "taken"), [("10.89.0.2", "10.89.0.2"), ("10.89.0.3", "10.89.0.4"),
                                                 ("10.89.0.1", "10.89.0.4"), ("10.90.0.9", "10.89.0.4")])
def test_the_address_of_the_last_start_is_preferred_where_free(tmp_path: Path, leases: Path, previous: str,
                                                               taken: str) -> None:
    """The record's `address` (its last start's): taken again where it is free (a restart or a
    reboot keeps a container's address), as ipam.pick's preferred; held by another (.3), the
    gateway, or outside the subnet: the next after .last, as without it."""
    (tmp_path / "address").write_text(previous + "\n")
    with ipam.Leases.open(leases) as ls:
        expected = ipam.pick(SUBNET, GW, {ipam.parse_ip(a) for a in ls.leases.values()},
                             ipam.parse_ip(ls.last) if ls.last else None, preferred=ipam.parse_ip(previous))
    netup(tmp_path, leases)
    assert held(leases)[CID] == ipam.format_ip(expected) == taken
