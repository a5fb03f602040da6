"""Unit properties from a spec: a pure function, checked here without any bus. The golden unit
file is its assertions (quadlet's habit): `## assert-key-is SECTION KEY VALUE...`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from sdctr.paths import STOP_SCRIPT
from sdctr.spec import ContainerSpec, Device, Resources, RestartPolicy
from sdctr.systemd.properties import Host, cpu_weight, properties, unit_file

GOLDEN = Path(__file__).parent / "golden"
SDCTR = ["/usr/bin/sdctr"]


def web(**kw: object) -> ContainerSpec:
    base = dict(id="0123456789ab" + "c" * 52, name="web", image="nginx:latest", image_id="f" * 64,
                command=("nginx", "-g", "daemon off;"),
                resources=Resources(cpu_shares=512, memory=256 * 1024**2, cpus=0.5, pids_limit=100),
                restart=RestartPolicy.ON_FAILURE, stop_timeout=10)
    base.update(kw)
    return ContainerSpec(**base)  # type: ignore[arg-type]


def props(spec: ContainerSpec, version: int = 1, systemd: int = 252) -> dict[str, object]:
    return {name: value for name, _, value in properties(spec, Host(version, systemd), SDCTR)}


@pytest.mark.parametrize(("shares", "weight"), [(2, 1), (512, 59), (1024, 100), (262144, 10000)])
def test_cpu_weight_follows_runc(shares: int, weight: int) -> None:
    assert cpu_weight(shares) == weight


def test_cpu_weight_keeps_the_order_of_shares() -> None:
    weights = [cpu_weight(s) for s in range(2, 262145, 97)]
    assert weights == sorted(weights)
    assert all(1 <= w <= 10000 for w in weights)


def test_cgroup_v1_names() -> None:
    p = props(web(), version=1)
    assert p["CPUShares"] == 512
    assert p["MemoryLimit"] == 256 * 1024**2
    assert "CPUWeight" not in p and "MemoryMax" not in p


def test_cgroup_v2_names() -> None:
    p = props(web(), version=2)
    assert p["CPUWeight"] == 59
    assert p["MemoryMax"] == 256 * 1024**2
    assert "CPUShares" not in p and "MemoryLimit" not in p


def test_no_limits_when_none_asked() -> None:
    p = props(web(resources=Resources()))
    assert not {"CPUShares", "MemoryLimit", "CPUQuotaPerSecUSec"} & set(p)
    assert p["TasksMax"] == 4096


def test_lifecycle_properties() -> None:
    p = props(web())
    assert p["ExecStartPre"] == [("/usr/bin/sdctr", ["/usr/bin/sdctr", "hook", "prestart", web().id], False)]
    assert p["ExecStart"] == [("/usr/bin/sdctr", ["/usr/bin/sdctr", "init", web().id], False)]
    assert p["ExecStop"] == [("/bin/sh", ["/bin/sh", STOP_SCRIPT, "10"], False)]  # the grace: stop.sh
    assert p["Type"] == "notify"
    assert p["ExecStopPost"][0][1][1:] == ["hook", "poststop", web().id]  # type: ignore[index]
    assert p["KillMode"] == "mixed"
    assert p["TimeoutStopUSec"] == 70_000_000  # the grace and the hooks: systemd never cuts one short
    assert p["Restart"] == "on-failure"
    assert p["Slice"] == "sdctr.slice"
    assert p["SyslogIdentifier"] == "web"
    assert b"CONTAINER_NAME=web" in p["LogExtraFields"]  # type: ignore[operator]
    assert p["CPUQuotaPerSecUSec"] == 500_000
    assert p["StandardOutput"] == "journal"


def test_restarts_as_docker() -> None:
    """systemd's start limit (5 starts in 10 s) must not end `always`; on-failure:N is N restarts;
    the delay doubles from 100 ms to a minute where systemd (v254) can grow it."""
    always = props(web(restart=RestartPolicy.ALWAYS))
    assert always["StartLimitIntervalUSec"] == 0 and "StartLimitBurst" not in always
    assert always["RestartUSec"] == 100_000 and "RestartSteps" not in always
    grown = props(web(restart=RestartPolicy.ALWAYS), systemd=254)
    assert (grown["RestartSteps"], grown["RestartMaxDelayUSec"]) == (9, 60_000_000)
    assert 1.9 < (60_000_000 / 100_000) ** (1 / grown["RestartSteps"]) < 2.1  # type: ignore[operator]
    counted = props(web(restart_retries=2))
    assert counted["StartLimitBurst"] == 3  # the first start and 2 restarts
    assert counted["StartLimitIntervalUSec"] > 50 * 365 * 86400 * 10**6  # type: ignore[operator]
    assert not {"RestartUSec", "StartLimitIntervalUSec"} & set(props(web(restart=RestartPolicy.NO)))


def test_rm_containers_do_not_linger_as_failed_units() -> None:
    assert props(web(remove=True, restart=RestartPolicy.NO))["CollectMode"] == "inactive-or-failed"
    assert "CollectMode" not in props(web())


def test_attached_run_passes_descriptors() -> None:
    p = {n: v for n, _, v in properties(web(), Host(1, 252), SDCTR, stdio=(0, 1, 2))}
    assert (p["StandardInputFileDescriptor"], p["StandardOutputFileDescriptor"]) == (0, 1)
    assert "StandardOutput" not in p


def unit_sections(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> its values in order, as systemd reads a unit file."""
    found: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith(("#", ";")):
            key, sep, value = line.partition("=")
            assert sep, f"not a KEY=VALUE line: {line!r}"
            found.setdefault((section, key), []).append(value)
    return found


def check_golden(text: str, golden: Path, **subst: str) -> int:
    """Runs the golden file's `## assert-...` lines against the unit `text`; how many ran."""
    keys = unit_sections(text)
    ran = 0
    text_of_golden = golden.read_text()
    for name, value in subst.items():
        text_of_golden = text_of_golden.replace(f"@{name}@", value)
    for line in text_of_golden.splitlines():
        if not line.startswith("## assert-"):
            continue
        verb, section, key, *values = shlex.split(line[3:])
        got = keys.get((section, key))
        if verb == "assert-key-is":
            assert got == values, f"[{section}] {key}: {got} != {values}\n{text}"
        elif verb == "assert-key-is-regex":
            assert got is not None and len(got) == 1 and re.fullmatch(values[0], got[0]), (section, key, got)
        elif verb == "assert-key-missing":
            assert got is None, f"[{section}] {key} is there: {got}"
        else:
            raise AssertionError(f"{golden.name}: unknown assertion {verb}")
        ran += 1
    return ran


def test_unit_file_keeps_its_golden_assertions() -> None:
    text = unit_file(properties(web(), Host(1, 219), SDCTR))
    assert check_golden(text, GOLDEN / "web.service", ID=web().id, STOP_SCRIPT=STOP_SCRIPT) >= 20


def test_a_poststop_fast_path_hands_over_to_the_hook() -> None:
    fast = ["/bin/sh", "/x/poststop.sh", "args"]
    p = {n: v for n, _, v in properties(web(), Host(1, 252), SDCTR, poststop=fast)}
    path, argv, _ = p["ExecStopPost"][0]  # type: ignore[index]
    assert path == "/bin/sh"
    assert argv == [*fast, *SDCTR, "hook", "poststop", web().id]


def test_devices_are_closed_to_all_but_the_pseudo_devices() -> None:
    # Docker's default list (moby oci/defaults.go), written out: mknod of anything, read/write
    # of the pseudo devices and the container's own ptys, nothing else (no disk, no /dev/mem)
    docker_default = {("char-*", "m"), ("block-*", "m"), ("/dev/null", "rwm"), ("/dev/zero", "rwm"),
                      ("/dev/full", "rwm"), ("/dev/random", "rwm"), ("/dev/urandom", "rwm"),
                      ("/dev/tty", "rwm"), ("/dev/console", "rwm"), ("/dev/ptmx", "rwm"),
                      ("char-pts", "rwm")}
    for cgroup in (1, 2):
        p = props(web(), version=cgroup)
        assert p["DevicePolicy"] == "closed"
        assert set(p["DeviceAllow"]) == docker_default


def test_a_device_adds_its_node_to_the_list() -> None:
    loop = Device("/dev/loop3", "/dev/xvda", "rw", "b", 7, 3)
    for cgroup in (1, 2):
        p = props(web(devices=(loop,)), version=cgroup)
        assert p["DevicePolicy"] == "closed"
        assert p["DeviceAllow"][-1] == ("/dev/loop3", "rw")  # type: ignore[index]
        assert ("/dev/loop3", "rw") not in p["DeviceAllow"][:-1]  # type: ignore[index]
    # the same node twice: once, with both accesses (systemd would keep one over D-Bus)
    twice = props(web(devices=(loop, loop.replace(path="/dev/ro", perms="m"))))["DeviceAllow"]
    assert twice[-1] == ("/dev/loop3", "rwm") and len(twice) == len(p["DeviceAllow"])  # type: ignore
    assert "DeviceAllow=/dev/loop3 rw\n" in unit_file(properties(web(devices=(loop,)), Host(1, 219), SDCTR))


def test_privileged_has_no_device_cgroup() -> None:
    # "auto" without a list is no restriction (systemd.resource-control(5)); a list, even of
    # --device's nodes, would close the rest again
    loop = Device("/dev/loop3", "/dev/xvda", "rw", "b", 7, 3)
    for cgroup in (1, 2):
        p = props(web(privileged=True, devices=(loop,)), version=cgroup)
        assert p["DevicePolicy"] == "auto" and "DeviceAllow" not in p
    text = unit_file(properties(web(privileged=True), Host(1, 219), SDCTR))
    assert "DevicePolicy=auto\n" in text and "DeviceAllow" not in text


def test_journald_keeps_every_line_where_systemd_can_say_so() -> None:
    # 0 would be "unset" to systemd (journald's 37,500-line default applies): 1 us is no limit
    assert props(web(), systemd=252)["LogRateLimitIntervalUSec"] == 1
    # a transient unit with a property systemd does not know fails to start: none before v240
    assert "LogRateLimitIntervalUSec" not in props(web(), systemd=239)


def test_a_joined_containers_unit_file_binds_to_the_other_in_its_unit_section() -> None:
    """--network container:NAME in a unit file (systemd without transient hooks): BindsTo= and
    After= NAME's unit in [Unit], as unit names; systemd ignores dependencies in [Service]."""
    from sdctr.spec import NetworkMode

    joiner = web(network=NetworkMode.CONTAINER, network_container="f" * 64)
    text = unit_file(properties(joiner, Host(1, 219), SDCTR, joins="ctr-ffffffffffff.service"))
    unit_section, service_section = text.split("[Service]")
    assert "\nBindsTo=ctr-ffffffffffff.service\n" in unit_section
    assert "\nAfter=ctr-ffffffffffff.service\n" in unit_section
    assert "BindsTo" not in service_section and "After=" not in service_section
