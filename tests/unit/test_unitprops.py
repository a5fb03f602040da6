"""--property KEY=VALUE and the limit flags that become systemd properties: each sent with the D-Bus
signature systemd-run uses for it (bus_append_unit_property_assignment), written back into a unit
file as a line systemd reads the same, and named by the cgroup version's properties."""

from __future__ import annotations

from typing import Any

import pytest

from sdctr import unitprops
from sdctr.log import SdctrError
from sdctr.options import run_options
from sdctr.spec import ContainerSpec, Resources
from sdctr.systemd.properties import Host, properties, unit_file

pytestmark = pytest.mark.unit

INF = 2**64 - 1
ZERO4, ZERO16 = bytes(4), bytes(16)

# what systemd-run sends for each (its signatures, read from src/shared/bus-unit-util.c), and the
# unit file line that says the same
CASES: list[tuple[str, list[tuple[str, str, Any]], str]] = [
    ("MemoryHigh=200M", [("MemoryHigh", "t", 200 << 20)], "MemoryHigh=209715200"),
    ("MemoryLow=1.5G", [("MemoryLow", "t", 3 << 29)], "MemoryLow=1610612736"),
    ("MemoryHigh=infinity", [("MemoryHigh", "t", INF)], "MemoryHigh=infinity"),
    ("MemoryHigh=50%", [("MemoryHighScale", "u", 2**31)], "MemoryHigh=50%"),
    ("MemorySwapMax=0", [("MemorySwapMax", "t", 0)], "MemorySwapMax=0"),
    ("IOWeight=200", [("IOWeight", "t", 200)], "IOWeight=200"),
    ("BlockIOWeight=300", [("BlockIOWeight", "t", 300)], "BlockIOWeight=300"),
    ("AllowedCPUs=0-1,3", [("AllowedCPUs", "ay", b"\x0b")], "AllowedCPUs=0-1,3"),
    ("AllowedMemoryNodes=8", [("AllowedMemoryNodes", "ay", b"\x00\x01")], "AllowedMemoryNodes=8"),
    ("CPUAffinity=1", [("CPUAffinity", "ay", b"\x02")], "CPUAffinity=1"),
    ("TasksAccounting=yes", [("TasksAccounting", "b", True)], "TasksAccounting=yes"),
    ("IPAccounting=off", [("IPAccounting", "b", False)], "IPAccounting=no"),
    ("IPAddressDeny=any", [("IPAddressDeny", "a(iayu)", [(2, ZERO4, 0), (10, ZERO16, 0)])],
     "IPAddressDeny=0.0.0.0/0 ::/0"),
    ("IPAddressAllow=10.0.0.0/8 ::1", [("IPAddressAllow", "a(iayu)",
                                        [(2, b"\x0a\0\0\0", 8), (10, ZERO16[:15] + b"\x01", 128)])],
     "IPAddressAllow=10.0.0.0/8 ::1/128"),
    ("IPAddressDeny=", [("IPAddressDeny", "a(iayu)", [])], "IPAddressDeny="),
    ("IOReadBandwidthMax=/dev/sda 1M", [("IOReadBandwidthMax", "a(st)", [("/dev/sda", 1_000_000)])],
     "IOReadBandwidthMax=/dev/sda 1000000"),
    ("IODeviceWeight=/dev/sda 50", [("IODeviceWeight", "a(st)", [("/dev/sda", 50)])],
     "IODeviceWeight=/dev/sda 50"),
    ("CPUQuotaPeriodSec=10ms", [("CPUQuotaPeriodUSec", "t", 10_000)], "CPUQuotaPeriodSec=10000us"),
    ("LimitNOFILE=1024:4096", [("LimitNOFILE", "t", 4096), ("LimitNOFILESoft", "t", 1024)],
     "LimitNOFILE=1024:4096"),
    ("LimitCORE=infinity", [("LimitCORE", "t", INF), ("LimitCORESoft", "t", INF)],
     "LimitCORE=infinity:infinity"),
    ("OOMScoreAdjust=-500", [("OOMScoreAdjust", "i", -500)], "OOMScoreAdjust=-500"),
]


@pytest.mark.parametrize(("text", "sent", "line"), CASES, ids=[c[0] for c in CASES])
def test_sent_as_systemd_run_sends_it_and_written_as_systemd_reads_it(
        text: str, sent: list[tuple[str, str, Any]], line: str) -> None:
    assert unitprops.parse("--property", text) == sent
    assert unit_file(sent).splitlines()[-1] == line
    # the file's line is the same assignment: read again, it is sent the same
    assert unitprops.parse("--property", line) == sent


@pytest.mark.parametrize(("text", "message"), [
    ("MemoryHihg=1G", "MemoryHihg is not a property sdctr passes on"),
    ("MemoryHigh", "is not KEY=VALUE"),
    ("MemoryHigh=lots", "'lots' is not a size"),
    ("MemoryHigh=101%", "more than 100%"),
    ("IOWeight=lots", "'lots' is not a whole number"),
    ("BlockIOWeight=-1", "-1 is outside 0..18446744073709551615"),
    ("AllowedCPUs=0-x", "is not a number or a range"),
    ("IPAddressDeny=10.0.0.300", "is not an address or a prefix"),
    ("IPAddressDeny=10.0.0.0/33", "33 is outside 0..32"),
    ("IOReadBandwidthMax=1M", "not a device's path and a value"),
    ("LimitNOFILE=4096:1024", "the soft limit is above the hard limit"),
    ("TasksAccounting=maybe", "is not yes or no"),
])
def test_a_bad_assignment_is_one_line_naming_it(text: str, message: str) -> None:
    with pytest.raises(SdctrError) as e:
        unitprops.parse("--property", text)
    assert str(e.value).startswith(f"--property {text!r}: ") or "is not KEY=VALUE" in str(e.value)
    assert message in str(e.value) and "\n" not in str(e.value) and e.value.status == 125


def test_an_unknown_key_lists_the_supported() -> None:
    with pytest.raises(SdctrError) as e:
        unitprops.parse("--property", "MemoryHihg=1G")
    assert e.value.hint is not None
    for name in ("MemoryHigh", "MemoryLow", "IOWeight", "AllowedCPUs", "IPAddressDeny", "IPAddressAllow",
                 "LimitNOFILE"):
        assert name in e.value.hint.replace("|", " Limit"), name


@pytest.mark.parametrize(("text", "flag"), [("MemoryMax=1G", "--memory"), ("TasksMax=10", "--pids-limit"),
                                            ("CPUQuota=50%", "--cpus"), ("CPUWeight=10", "--cpu-shares")])
def test_what_a_flag_sets_is_the_flags(text: str, flag: str) -> None:
    with pytest.raises(SdctrError) as e:
        unitprops.parse("--property", text)
    assert "is set by sdctr itself" in str(e.value) and e.value.hint == f"use {flag} instead"


def test_cgroup_properties_are_live_the_processes_are_not() -> None:
    assert unitprops.live("MemoryHigh") and unitprops.live("IPAddressDeny") and unitprops.live("AllowedCPUs")
    assert not unitprops.live("LimitNOFILE") and not unitprops.live("CPUAffinity")
    assert not unitprops.live("OOMScoreAdjust") and not unitprops.live("Bogus")


# --- the flags, by cgroup version -----------------------------------------------------------------

def spec(**resources: Any) -> ContainerSpec:
    return ContainerSpec(id="a" * 64, name="web", image="busybox", image_id="", command=("sh",),
                         resources=Resources(**resources))


def sent(s: ContainerSpec, cgroup: int) -> dict[str, Any]:
    return {name: value for name, _, value in properties(s, Host(cgroup, 252), ["/usr/bin/sdctr"])}


def test_cpuset_cpus_is_allowed_cpus_on_v2_and_the_affinity_on_v1() -> None:
    s = spec(cpuset_cpus="1")
    assert sent(s, 2)["AllowedCPUs"] == b"\x02" and "CPUAffinity" not in sent(s, 2)
    assert sent(s, 1)["CPUAffinity"] == b"\x02" and "AllowedCPUs" not in sent(s, 1)


def test_blkio_weight_is_blockio_weight_on_v1_and_io_weight_on_v2_as_runc_converts() -> None:
    assert sent(spec(blkio_weight=300), 1)["BlockIOWeight"] == 300
    v2 = sent(spec(blkio_weight=300), 2)
    assert v2["IOWeight"] == 2930 and "BlockIOWeight" not in v2  # 1 + (300-10)*9999/990
    assert [sent(spec(blkio_weight=w), 2)["IOWeight"] for w in (10, 500, 1000)] == [1, 4950, 10000]


def test_memory_swap_is_swap_alone_on_v2_and_memsw_on_v1() -> None:
    v2 = sent(spec(memory=256 << 20, memory_swap=1 << 30), 2)
    assert v2["MemorySwapMax"] == (1 << 30) - (256 << 20)
    assert sent(spec(memory=256 << 20, memory_swap=-1), 2)["MemorySwapMax"] == INF
    v1 = sent(spec(memory=256 << 20, memory_swap=1 << 30), 1)
    assert "MemorySwapMax" not in v1
    [memsw] = [argv for _, argv, _ in v1["ExecStartPre"] if "memory.memsw.limit_in_bytes" in " ".join(argv)]
    assert memsw[-1] == str(1 << 30)
    assert not [a for _, a, _ in sent(spec(memory=256 << 20, memory_swap=-1), 1)["ExecStartPre"]
                if "memsw" in " ".join(a)]  # unlimited: the kernel's default, nothing to write


def test_on_v1_a_v2_memory_property_keeps_the_memory_limit() -> None:
    """systemd on v1 limits by MemoryMax=, not MemoryLimit=, once a unit has MemoryHigh= & co."""
    s = spec(memory=64 << 20, properties=("MemoryHigh=200M",))
    assert (sent(s, 1)["MemoryLimit"], sent(s, 1)["MemoryMax"]) == (64 << 20, 64 << 20)
    assert "MemoryMax" not in sent(spec(memory=64 << 20, properties=("IOWeight=10",)), 1)
    assert "MemoryLimit" not in sent(s, 2)


def test_ulimits_and_properties_follow_the_flags_in_order() -> None:
    s = spec(ulimits=("nofile=1024:4096",), properties=("MemoryHigh=100M", "IPAddressDeny=any"))
    text = unit_file(properties(s, Host(1, 219), ["/usr/bin/sdctr"]))
    assert "\nLimitNOFILE=1024:4096\n" in text and "LimitNOFILESoft" not in text
    assert "\nMemoryHigh=104857600\nIPAddressDeny=0.0.0.0/0 ::/0\n" in text
    p = sent(s, 1)
    assert (p["LimitNOFILE"], p["LimitNOFILESoft"]) == (4096, 1024)


@pytest.mark.parametrize(("flags", "ulimits"), [
    ({"ulimits": ["nofile=1024"]}, ("nofile=1024:1024",)),
    ({"ulimits": ["NOFILE=1024:-1"]}, ("nofile=1024:infinity",)),
    ({"ulimits": ["core=unlimited"]}, ("core=infinity:infinity",)),
])
def test_ulimit_as_docker_takes_it(flags: dict[str, Any], ulimits: tuple[str, ...]) -> None:
    assert run_options({"image": "busybox", **flags}).ulimits == ulimits


@pytest.mark.parametrize(("flags", "message"), [
    ({"memory_swap": "512m"}, "--memory-swap needs --memory"),
    ({"memory": "256m", "memory_swap": "128m"}, "is below --memory"),
    ({"ulimits": ["nofile=10:5"]}, "the soft limit is above the hard limit"),
    ({"ulimits": ["nofile"]}, "is not NAME=SOFT[:HARD]"),
    ({"ulimits": ["nofile=8:1024"]}, "below 16, sdctr's own start of the container fails"),
])
def test_the_flags_docker_refuses_are_refused(flags: dict[str, Any], message: str) -> None:
    with pytest.raises(SdctrError, match=message.replace("[", r"\[")):
        run_options({"image": "busybox", **flags})


def test_memory_swap_minus_one_needs_no_memory() -> None:
    assert run_options({"image": "busybox", "memory_swap": "-1"}).memory_swap == -1


def test_a_record_keeps_them_through_json() -> None:
    s = spec(ulimits=("nofile=1:2",), properties=("MemoryHigh=1M",), cpuset_cpus="0", memory_swap=-1)
    import json

    assert ContainerSpec.from_json(json.loads(json.dumps(s.to_json()))) == s
