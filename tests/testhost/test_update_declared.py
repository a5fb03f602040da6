"""`sdctr update` of a declared container, under a real systemd: the change is live, and kept
where systemd keeps `systemctl set-property`'s (drop-ins in /etc/systemd/system.control), so the
generator's unit, remade from the unchanged YAML file at every daemon-reload, does not undo it:
not at a daemon-reload, not at a restart, not at a reboot; `systemctl revert` gives the file's
limits back. One test host of its own (the generator installed, as a package leaves it)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from helpers.declared import active, install_declared
from helpers.testhost import Machine, boot_testhost, remove_testhost, wait_for
from test_limits import bfq

pytestmark = pytest.mark.testhost

WEB = """\
image: busybox
command: [sh, -c, "ulimit -n; exec sleep 100000"]
memory: 64m
ulimits: {nofile: {soft: 2048, hard: 8192}}
properties: {MemoryHigh: 200M, IPAddressDeny: [any]}
"""
UNIT = "ctr-web.service"


@pytest.fixture(scope="module")
def declared() -> Iterator[Machine]:
    host = boot_testhost("bookworm", name=f"upd{os.getpid()}")
    try:
        install_declared(host, {"web": WEB})
        host.exec("systemctl", "start", UNIT)
        yield host
    finally:
        remove_testhost(host)


def cgroup_file(host: Machine, controller: str, name: str) -> str:
    cgroup = host.exec("systemctl", "show", "-P", "ControlGroup", UNIT).stdout.strip()
    return host.exec("cat", f"/sys/fs/cgroup/{controller}{cgroup}/{name}").stdout.strip()


def memory(host: Machine) -> int:
    return int(cgroup_file(host, "memory", "memory.limit_in_bytes"))


def test_a_declared_containers_properties_are_in_its_generated_unit(declared: Machine) -> None:
    def show(prop: str) -> str:
        return declared.exec("systemctl", "show", "-P", prop, UNIT).stdout.strip()

    assert show("MemoryHigh") == str(200 << 20)
    assert (show("LimitNOFILE"), show("LimitNOFILESoft")) == ("8192", "2048")
    assert sorted(show("IPAddressDeny").split()) == ["0.0.0.0/0", "::/0"]
    logs = declared.exec("journalctl", "-u", UNIT, "--no-pager", "-o", "cat").stdout
    assert "2048" in logs.split(), logs  # the container's own ulimit -n


def test_update_of_a_declared_container_outlives_reloads_restarts_and_reboots(declared: Machine) -> None:
    host = declared
    assert memory(host) == 64 << 20
    pid = host.exec("systemctl", "show", "-P", "MainPID", UNIT).stdout.strip()
    r = host.exec("sdctr", "update", "-m", "128m", "--property", "BlockIOWeight=800", "web")
    assert "systemctl revert ctr-web.service" in r.stderr, r.stderr
    assert memory(host) == 128 << 20  # live
    assert cgroup_file(host, "blkio", "blkio.bfq.weight") == bfq(800)
    assert host.exec("systemctl", "show", "-P", "MainPID", UNIT).stdout.strip() == pid  # not restarted
    drop_ins = host.exec("systemctl", "cat", UNIT).stdout
    assert "/etc/systemd/system.control/ctr-web.service.d/" in drop_ins
    assert "MemoryLimit=134217728" in drop_ins

    host.exec("systemctl", "daemon-reload")  # the generator remakes the unit from web.yaml's 64m
    assert host.exec("systemctl", "show", "-P", "MemoryLimit", UNIT).stdout.strip() == str(128 << 20)
    assert memory(host) == 128 << 20
    host.exec("systemctl", "restart", UNIT)
    assert memory(host) == 128 << 20 and cgroup_file(host, "blkio", "blkio.bfq.weight") == bfq(800)
    # and a stopped one's change waits for its start
    host.exec("systemctl", "stop", UNIT)
    host.exec("sdctr", "update", "-m", "96m", "web")
    host.exec("systemctl", "start", UNIT)
    assert memory(host) == 96 << 20

    host.reboot()
    wait_for(lambda: active(host, UNIT) == "active", timeout=120, what="ctr-web after the reboot")
    assert memory(host) == 96 << 20
    shown = host.exec("sdctr", "inspect", "-f", "{{.HostConfig.Memory}}", "web").stdout.strip()
    assert shown == str(96 << 20)

    host.exec("systemctl", "revert", UNIT)  # the drop-ins go: the file's limits rule again
    host.exec("systemctl", "restart", UNIT)
    assert memory(host) == 64 << 20


def affinity(host: Machine) -> str:
    pid = host.exec("systemctl", "show", "-P", "MainPID", UNIT).stdout.strip()
    status = host.exec("cat", f"/proc/{pid}/status").stdout
    return next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Cpus_allowed_list:"))


def test_update_cpuset_blkio_weight_and_swap_of_a_declared_container(declared: Machine) -> None:
    """Live, and kept across a daemon-reload and a restart (cgroup v1 here: the CPU affinity and
    memsw, which systemd takes for no loaded unit, as drop-ins of sdctr's beside set-property's)."""
    host = declared
    host.exec("systemctl", "restart", UNIT)
    assert affinity(host) == "0-1"
    host.exec("sdctr", "update", "--cpuset-cpus", "1", "--blkio-weight", "300", "--memory-swap", "256m",
              "web")
    assert affinity(host) == "1"
    assert cgroup_file(host, "blkio", "blkio.bfq.weight") == bfq(300)
    assert cgroup_file(host, "memory", "memory.memsw.limit_in_bytes") == str(256 << 20)
    host.exec("systemctl", "daemon-reload")
    host.exec("systemctl", "restart", UNIT)
    assert affinity(host) == "1"
    assert cgroup_file(host, "blkio", "blkio.bfq.weight") == bfq(300)
    assert cgroup_file(host, "memory", "memory.memsw.limit_in_bytes") == str(256 << 20)


CONTROL = "/etc/systemd/system.control/ctr-web.service.d"


def drop_ins(host: Machine) -> bool:
    return host.exec("test", "-d", CONTROL, check=False).returncode == 0


def test_removing_a_declared_container_removes_its_drop_ins(declared: Machine) -> None:
    """`sdctr rm`, and a file removed then `sdctr system gc`: update's drop-ins go with the
    container, so one declared again under its name has its own file's limits, not 100m."""
    host = declared
    host.exec("systemctl", "restart", UNIT)
    host.exec("sdctr", "update", "-m", "100m", "web")
    assert drop_ins(host) and memory(host) == 100 << 20
    host.exec("sdctr", "rm", "-f", "web")
    assert not drop_ins(host)
    host.exec("systemctl", "start", UNIT)  # made again from web.yaml
    assert memory(host) == 64 << 20

    host.exec("sdctr", "update", "-m", "100m", "web")
    assert drop_ins(host)
    host.exec("systemctl", "stop", UNIT)
    host.exec("mv", "/etc/sdctr/containers/web.yaml", "/tmp/web.yaml")
    host.exec("systemctl", "daemon-reload")
    out = host.exec("sdctr", "system", "gc").stdout
    assert "removed declared container web (its file is gone)" in out, out
    assert not drop_ins(host)
    assert "web" not in host.exec("sdctr", "ps", "-a", "--format", "{{.Names}}").stdout.split()
    host.exec("mv", "/tmp/web.yaml", "/etc/sdctr/containers/web.yaml")  # declared again
    host.exec("systemctl", "daemon-reload")
    host.exec("systemctl", "start", UNIT)
    assert memory(host) == 64 << 20
