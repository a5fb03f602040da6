"""The boot-time units under a real systemd, rebooted once (`testhost reboot`) as a package leaves
the host: sdctr-setup.service makes storage, the bridge sdctr0 and its nftables table before any
container starts, and sdctr-restart.service starts the `run -d --restart` containers without
published ports at once, those with ports once network-online.target is reached. A unit of the
test's holds network-online.target back 15 s (a slow DHCP's stand-in), so the order shows."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from helpers.declared import active, install_declared, show, unit_of
from helpers.testhost import Machine, boot_testhost, remove_testhost, wait_for

pytestmark = pytest.mark.testhost

WEB = """\
image: busybox
command: [sh, -c, "mkdir -p /www && echo web page > /www/index.html; exec httpd -f -p 80 -h /www"]
network: bridge
ports: ["8080:80"]
"""
# network-online.target is reached 15 s after it is first wanted
SLOW_ONLINE = """\
[Unit]
Description=the test's slow network: network-online.target waits for it
Before=network-online.target

[Service]
Type=oneshot
ExecStart=/bin/sleep 15
RemainAfterExit=yes

[Install]
WantedBy=network-online.target
"""
HOLD = 15
ONLINE = "network-online.target"


def monotonic(host: Machine, unit: str, prop: str) -> float:
    """A timestamp of the unit's, this boot's, in seconds."""
    return int(show(host, unit, f"{prop}Monotonic")) / 1e6


def page(host: Machine) -> str:
    get = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8080/', timeout=5).read().decode())"
    return host.exec("python3", "-c", get, check=False).stdout.strip()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def booted() -> Iterator[Machine]:
    host = boot_testhost("bookworm", name=f"boot{os.getpid()}")
    try:
        install_declared(host, {"web": WEB})
        host.exec("sh", "-c", "cat > /etc/systemd/system/slow-online.service", input=SLOW_ONLINE)
        host.exec("systemctl", "enable", "slow-online.service")
        host.exec("systemctl", "start", "ctr-web.service")
        for name, ports in (("calm", []), ("pub", ["-p", "8081:80"])):
            host.exec("sdctr", "run", "-d", "--name", name, "--restart", "always", *ports, "busybox",
                      "sleep", "100000")
        started = time.monotonic()
        host.reboot()
        host.boot_seconds = time.monotonic() - started  # type: ignore[attr-defined]
        wait_for(lambda: active(host, "sdctr-restart.service") in ("active", "failed"), timeout=120,
                 what="sdctr-restart.service")
        yield host
    finally:
        remove_testhost(host)


def test_setup_makes_the_bridge_and_its_table_before_any_container(booted: Machine) -> None:
    host = booted
    assert active(host, "sdctr-setup.service") == "active"
    assert show(host, "sdctr-setup.service", "UnitFileState") == "enabled"  # the preset's
    # it, not the first container's hook, made them at this boot (this run's lines: a test host's
    # reboot keeps the kernel's boot id)
    run = show(host, "sdctr-setup.service", "InvocationID")
    made = host.exec("journalctl", f"_SYSTEMD_INVOCATION_ID={run}", "-o", "cat", "--no-pager").stdout
    assert "made bridge sdctr0 (10.89.0.1/16)" in made, made
    assert "made nftables table ip sdctr" in made, made
    host.exec("ip", "link", "show", "sdctr0")
    host.exec("nft", "list", "table", "ip", "sdctr")
    ready = monotonic(host, "sdctr-setup.service", "ActiveEnterTimestamp")
    wait_for(lambda: active(host, "ctr-web.service") == "active", timeout=60, what="ctr-web active")
    units = {"web": "ctr-web.service", "calm": unit_of(host, "calm"), "pub": unit_of(host, "pub")}
    for name, unit in units.items():
        assert "sdctr-setup.service" in show(host, unit, "After").split(), name
        assert active(host, unit) == "active", name
        # its ExecStartPre (mount, netup) began once the setup was done
        assert monotonic(host, unit, "InactiveExitTimestamp") >= ready, name
    assert "sdctr-setup.service" in show(host, "ctr-web.service", "Wants").split()
    assert "sdctr-setup.service" in show(host, "sdctr-restart.service", "After").split()
    # the declared container is back, its port answering
    assert wait_for(lambda: page(host), what="web's page") == "web page"


def test_setup_again_makes_nothing(booted: Machine) -> None:
    started = time.monotonic()
    r = booted.exec("sdctr", "system", "setup")
    booted.setup_seconds = time.monotonic() - started  # type: ignore[attr-defined]
    assert r.stdout == "" and r.returncode == 0, r.stdout
    print(f"second setup: {booted.setup_seconds:.2f} s; reboot: {booted.boot_seconds:.1f} s")  # type: ignore[attr-defined]


def test_only_containers_with_ports_wait_for_network_online(booted: Machine) -> None:
    host = booted
    wait_for(lambda: active(host, ONLINE) == "active", timeout=60, what=ONLINE)
    online = monotonic(host, ONLINE, "ActiveEnterTimestamp")
    held = monotonic(host, "slow-online.service", "InactiveExitTimestamp")
    assert online - held >= HOLD - 1  # the hold worked
    calm = monotonic(host, unit_of(host, "calm"), "InactiveExitTimestamp")
    pub = monotonic(host, unit_of(host, "pub"), "InactiveExitTimestamp")
    assert calm < online - HOLD / 2, (calm, online)  # not held back
    assert pub >= online, (pub, online)
    web = monotonic(host, "ctr-web.service", "InactiveExitTimestamp")
    assert web >= online, (web, online)


def test_without_the_setup_unit_the_containers_make_it_themselves(booted: Machine) -> None:
    """sdctr-setup.service orders, it is not required: where it makes nothing (here a drop-in
    runs /bin/true instead; a host without the unit, or where it failed, is the same to the
    containers), the first container's hook makes the bridge and the table, and all come back.
    (The test host's reboot installs units/ again, so the unit itself cannot be removed.)"""
    host = booted
    host.exec("sh", "-c", "mkdir -p /etc/systemd/system/sdctr-setup.service.d && printf "
              "'[Service]\\nExecStart=\\nExecStart=/bin/true\\n' > "
              "/etc/systemd/system/sdctr-setup.service.d/nothing.conf")
    host.exec("systemctl", "daemon-reload")
    host.reboot()
    wait_for(lambda: active(host, "sdctr-restart.service") in ("active", "failed"), timeout=120,
             what="sdctr-restart.service")
    ran = show(host, "sdctr-setup.service", "ExecStart")
    assert "argv[]=/bin/true ;" in ran and "sdctr" not in ran, ran
    wait_for(lambda: active(host, "ctr-web.service") == "active", timeout=60, what="ctr-web active")
    assert wait_for(lambda: page(host), what="web's page") == "web page"
    host.exec("ip", "link", "show", "sdctr0")
    host.exec("nft", "list", "table", "ip", "sdctr")
    for name in ("calm", "pub"):
        assert active(host, unit_of(host, name)) == "active", name
