"""Containers that outlive a reboot, under a real systemd: YAML-declared ones (the generator's
units) and `sdctr run -d --restart ...` ones (sdctr-restart.service). One test host of its own,
set up as a package would leave it, rebooted once (`testhost reboot`: systemd started again over
the same root); each test checks one thing a user would after the reboot."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

import pytest
from helpers.declared import active, inspect, install_declared, show, unit_of
from helpers.testhost import Machine, boot_testhost, remove_testhost, wait_for

pytestmark = pytest.mark.testhost

WEB = """\
image: busybox
command: [sh, -c, "echo hello from web; mkdir -p /www && echo web page > /www/index.html;
  exec httpd -f -p 80 -h /www"]
network: bridge
ports: ["8080:80"]
healthcheck:
  test: test -f /www/index.html
  interval: 1s
memory: 64m
cpu_shares: 512
pids_limit: 50
restart: always
depends_on: [db]
unit:
  Documentation: https://example.com/web
service:
  OOMScoreAdjust: 100
"""
# a health check: db turns active (READY=1) only after its first pass, and web, After= it, waits
DB = "image: busybox\ncommand: sleep 100000\nhealthcheck:\n  test: test -d /proc/1\n  interval: 1s\n"
TYPO = "image: busybox\ncommand: sleep 100000\nmemroy: 64m\n"
# unique to this run: the test host's journal takes in the kernel's log, where systemd copies a
# generator's stderr, and so other test hosts' messages
TYPO_NAME = f"typo{os.getpid()}"


def sdctr_ps(host: Machine) -> dict[str, str]:
    """name -> status, as `sdctr ps -a` shows them."""
    out = host.exec("sdctr", "ps", "-a", "--format", "json").stdout
    import json

    rows = json.loads(out) if out.strip().startswith("[") else [json.loads(ln) for ln in out.splitlines()]
    return {r.get("Names", r.get("Name", "")): r.get("State", r.get("Status", "")) for r in rows}


# the page, fetched inside the test host (its busybox wget crashes there; python3 does not)
GET = ("import sys, urllib.request; "
       "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())")


def get(host: Machine, url: str) -> str:
    return host.exec("python3", "-c", GET, url, check=False).stdout.strip()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def rebooted() -> Iterator[Machine]:
    host = boot_testhost("bookworm", name=f"decl{os.getpid()}")
    try:
        install_declared(host, {"web": WEB, "db": DB, TYPO_NAME: TYPO})
        host.exec("systemctl", "start", "ctr-web.service", "ctr-db.service")
        # made with run -d: back after the reboot, but for the one stopped by hand
        for name, policy in (("keeper", "always"), ("failing", "on-failure:3"), ("stopper", "unless-stopped"),
                             ("plain", "no")):
            host.exec("sdctr", "run", "-d", "--name", name, "--restart", policy, "busybox", "sleep", "100000")
        host.exec("sdctr", "stop", "stopper")
        host.before = sdctr_ps(host)  # type: ignore[attr-defined]
        wait_for(lambda: get(host, "http://127.0.0.1:8080/") == "web page", what="web's page, first boot")
        host.web_ip = inspect(host, "web")["NetworkSettings"]["IPAddress"]  # type: ignore[attr-defined]
        host.failing_burst = host.exec("systemctl", "show", "-P", "StartLimitBurst",  # type: ignore[attr-defined]
                                       unit_of(host, "failing")).stdout.strip()
        started = time.monotonic()
        host.reboot()
        host.boot_seconds = time.monotonic() - started  # type: ignore[attr-defined]
        wait_for(lambda: active(host, "multi-user.target") == "active", timeout=120, what="multi-user.target")
        wait_for(lambda: active(host, "sdctr-restart.service") in ("active", "failed"), timeout=120,
                 what="sdctr-restart.service")
        yield host
    finally:
        remove_testhost(host)


def test_a_declared_container_comes_back_after_a_reboot(rebooted: Machine) -> None:
    assert rebooted.before["web"] == "running"  # type: ignore[attr-defined]
    wait_for(lambda: active(rebooted, "ctr-web.service") == "active", timeout=60, what="ctr-web active")
    assert sdctr_ps(rebooted)["web"] == "running"
    # the published port answers again (through the host's loopback)
    assert wait_for(lambda: get(rebooted, "http://127.0.0.1:8080/"), what="web's page") == "web page"
    # machined knows it again
    machines = rebooted.exec("machinectl", "list", "--no-legend", "--no-pager").stdout
    assert ["web", "container", "sdctr"] in [m.split()[:3] for m in machines.splitlines()], machines
    logs = rebooted.exec("journalctl", "-b", "-u", "ctr-web.service", "--no-pager").stdout
    assert "hello from web" in logs  # this boot's start, not the last one's
    # the record made at the first start is kept: the file did not change
    assert rebooted.exec("sdctr", "inspect", "-f", "{{.Id}}", "web").stdout.strip() == \
        rebooted.exec("sh", "-c", "echo -n 'sdctr declared container web' | sha256sum").stdout.split()[0]


def test_a_declared_container_keeps_its_address_across_a_reboot(rebooted: Machine) -> None:
    wait_for(lambda: active(rebooted, "ctr-web.service") == "active", timeout=60, what="ctr-web active")
    assert rebooted.web_ip.startswith("10.89.")  # type: ignore[attr-defined]
    assert inspect(rebooted, "web")["NetworkSettings"]["IPAddress"] == rebooted.web_ip  # type: ignore[attr-defined]


def test_systemctl_status_shows_the_declared_limits(rebooted: Machine) -> None:
    wait_for(lambda: active(rebooted, "ctr-web.service") == "active", timeout=60, what="ctr-web active")
    status = rebooted.exec("systemctl", "status", "--no-pager", "ctr-web.service", check=False).stdout
    assert "/etc/sdctr/containers/web.yaml" in status  # SourcePath: where it comes from
    assert "limit: 64.0M" in status, status
    assert re.search(r"Tasks: \d+ \(limit: 50\)", status), status
    # its health (STATUS= from the health checks) and its last log lines, this boot's
    assert re.search(r'Status: "healthy \d+/\d+"', status), status
    assert "hello from web" in status, status
    cgroup = rebooted.exec("systemctl", "show", "-P", "ControlGroup", "ctr-web.service").stdout.strip()
    assert rebooted.exec("cat", f"/sys/fs/cgroup/memory{cgroup}/memory.limit_in_bytes").stdout.strip() \
        == str(64 * 1024**2)
    assert rebooted.exec("cat", f"/sys/fs/cgroup/cpu{cgroup}/cpu.shares").stdout.strip() == "512"


def test_a_typo_is_in_the_journal_and_the_others_start(rebooted: Machine) -> None:
    wait_for(lambda: active(rebooted, "ctr-db.service") == "active", timeout=60, what="ctr-db active")
    # this boot's generator run said it (sdctr-generator-errors.service, at boot)
    journal = rebooted.exec("journalctl", "-b", "--no-pager", "-o", "cat", "-t", "sdctr-generator").stdout
    assert f"/etc/sdctr/containers/{TYPO_NAME}.yaml:3: unknown key 'memroy'" in journal, journal
    # not started at boot (no degraded boot for a typo); started by hand, it says why
    unit = f"ctr-{TYPO_NAME}.service"
    assert active(rebooted, unit) == "inactive"
    assert rebooted.exec("systemctl", "start", unit, check=False).returncode != 0
    status = rebooted.exec("systemctl", "status", "--no-pager", "-n", "20", unit, check=False).stdout
    assert f"{TYPO_NAME}.yaml:3: unknown key 'memroy'" in status, status


def test_run_restart_containers_come_back_but_one_stopped_by_hand(rebooted: Machine) -> None:
    assert rebooted.before["stopper"] == "exited"  # type: ignore[attr-defined]
    states = wait_for(lambda: (s := sdctr_ps(rebooted)) and s["keeper"] == "running" and s, timeout=60,
                      what="keeper running")
    assert states["failing"] == "running"  # on-failure: it did not stop on its own
    # on-failure:3 kept its 3 across the reboot: 1 start + 3 restarts, as at the first boot
    assert rebooted.failing_burst == "4"  # type: ignore[attr-defined]
    burst = rebooted.exec("systemctl", "show", "-P", "StartLimitBurst", unit_of(rebooted, "failing")).stdout
    assert burst.strip() == "4"
    assert states["stopper"] == "exited"  # unless-stopped, stopped by hand: stays stopped
    assert states["plain"] == "exited"  # --restart no
    assert active(rebooted, "sdctr-restart.service") == "active"


def verify(host: Machine, units: dict[str, str]) -> None:
    """systemd-analyze verify on the units, written where nothing loads them (its complaints
    about cgroup v1's CPUShares=/MemoryLimit= are warnings, not failures)."""
    for unit, text in units.items():
        host.exec("sh", "-c", f"mkdir -p /tmp/verify && cat > /tmp/verify/{unit}", input=text)
    r = host.exec("systemd-analyze", "verify", *(f"/tmp/verify/{u}" for u in units), check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_generate_systemd_prints_units_that_systemd_accepts(rebooted: Machine) -> None:
    # by FILE: what the generator made for web.yaml at boot, byte for byte
    path = "/etc/sdctr/containers/web.yaml"
    printed = rebooted.exec("sdctr", "generate", "systemd", path).stdout
    on_disk = rebooted.exec("cat", "/run/systemd/generator/ctr-web.service").stdout
    assert printed == on_disk
    assert re.search(r"^ExecStartPre=\S*/sdctr hook declare web$", printed, re.M), printed
    assert re.search(r"^ExecStopPost=.* hook poststop [0-9a-f]{64}$", printed, re.M), printed
    assert "MemoryLimit=67108864\n" in printed and "TasksMax=50\n" in printed
    # web Requires= db: verified together
    db = rebooted.exec("sdctr", "generate", "systemd", "db").stdout  # a declared one by its name
    assert "SourcePath=/etc/sdctr/containers/db.yaml\n" in db
    verify(rebooted, {"ctr-web.service": printed, "ctr-db.service": db})
    # by the name of a container made with run -d: its transient unit's properties, as a file
    cid = rebooted.exec("sdctr", "run", "-d", "--name", "gen", "-m", "32m", "--pids-limit", "20",
                        "busybox", "sleep", "100000").stdout.strip()
    try:
        printed = rebooted.exec("sdctr", "generate", "systemd", "gen").stdout
        # the hooks: its rootfs mounted and its network up before, both undone after
        assert re.search(rf"^ExecStartPre=.* /run/sdctr/{cid}/rootfs mount ", printed, re.M), printed
        assert re.search(rf"^ExecStartPre=.* hook netup {cid}$", printed, re.M), printed
        assert re.search(rf"^ExecStopPost=.* hook netdown {cid}$", printed, re.M), printed
        assert re.search(rf"^ExecStopPost=.* hook poststop {cid}$", printed, re.M), printed
        assert "MemoryLimit=33554432\n" in printed and "TasksMax=20\n" in printed, printed
        verify(rebooted, {f"ctr-{cid[:12]}.service": printed})
    finally:
        rebooted.exec("sdctr", "rm", "-f", "gen")


def test_depends_on_starts_db_first_and_stops_web_with_it(rebooted: Machine) -> None:
    """Last in this module: it stops both containers."""
    wait_for(lambda: active(rebooted, "ctr-web.service") == "active", timeout=60, what="ctr-web active")

    def show(unit: str, prop: str) -> int:
        return int(rebooted.exec("systemctl", "show", "-P", prop, unit).stdout.strip() or 0)

    # at boot, web's start began only once db was up (After=) and healthy (its READY=1 comes
    # after the first pass), and both are from this boot
    assert 0 < show("ctr-db.service", "ActiveEnterTimestampMonotonic") <= \
        show("ctr-web.service", "InactiveExitTimestampMonotonic")
    assert rebooted.exec("systemctl", "show", "-P", "StatusText", "ctr-db.service").stdout.strip() == \
        "healthy 3/3"
    # the extra settings reached the unit, and systemd applied them
    assert rebooted.exec("systemctl", "show", "-P", "Documentation", "ctr-web.service").stdout.strip() == \
        "https://example.com/web"
    pid = show("ctr-web.service", "MainPID")
    assert rebooted.exec("cat", f"/proc/{pid}/oom_score_adj").stdout.strip() == "100"
    # Requires=: stopping db stops web; starting web starts db again
    rebooted.exec("systemctl", "stop", "ctr-db.service")
    assert active(rebooted, "ctr-web.service") == "inactive"
    rebooted.exec("systemctl", "start", "ctr-web.service")
    assert active(rebooted, "ctr-db.service") == "active"


def test_systemctl_stop_runs_the_poststop_hook(rebooted: Machine) -> None:
    """After the depends_on test (which starts web again): a declared unit stopped by systemctl
    alone leaves no mount, veth or port mapping, and sdctr sees it exited."""
    wait_for(lambda: active(rebooted, "ctr-web.service") == "active", timeout=60, what="ctr-web active")
    cid = inspect(rebooted, "web")["Id"]

    def traces() -> list[str]:
        mountinfo = rebooted.exec("cat", "/proc/self/mountinfo").stdout
        mounts = [ln for ln in mountinfo.splitlines() if cid[:12] in ln]
        veths = [ln for ln in rebooted.exec("ip", "-o", "link", "show").stdout.splitlines()
                 if f"sdv{cid[:12]}" in ln]
        nft = rebooted.exec("nft", "list", "table", "ip", "sdctr", check=False).stdout
        return mounts + veths + [ln.strip() for ln in nft.splitlines() if "8080" in ln]
    assert any("8080" in t for t in traces()) and any("sdv" in t for t in traces()), traces()
    rebooted.exec("systemctl", "stop", "ctr-web.service")
    assert traces() == []
    assert sdctr_ps(rebooted)["web"] == "exited"


SICK = """\
image: busybox
command: [sh, -c, "touch /tmp/ok; exec sleep 100000"]
healthcheck:
  test: rm /tmp/ok
  interval: 2s
  timeout: 5s
  retries: 2
  start_period: 30s
  on_failure: restart
"""


def test_a_declared_containers_failing_health_check_restarts_its_unit(rebooted: Machine) -> None:
    """healthcheck: {on_failure: restart} in a file: the check passes once a start (it removes
    what the command made), then fails; the helper stops WATCHDOG=1 and systemd's watchdog (one
    interval, one timeout and 10 s: 17 s) stops the unit, which Restart=on-watchdog starts again."""
    host = rebooted
    host.exec("sh", "-c", "cat > /etc/sdctr/containers/sick.yaml", input=SICK)
    host.exec("systemctl", "daemon-reload")
    try:
        host.exec("systemctl", "start", "ctr-sick.service")
        assert show(host, "ctr-sick.service", "WatchdogUSec") == "17s"
        assert show(host, "ctr-sick.service", "Restart") == "on-watchdog"
        first = show(host, "ctr-sick.service", "MainPID")
        wait_for(lambda: int(show(host, "ctr-sick.service", "NRestarts")) >= 1, timeout=90, what="a restart")
        journal = host.exec("journalctl", "--no-pager", "-u", "ctr-sick.service", "-o", "cat").stdout
        assert "atchdog" in journal, journal  # "Watchdog timeout" / "Failed with result 'watchdog'"
        wait_for(lambda: active(host, "ctr-sick.service") == "active", timeout=60, what="active again")
        assert show(host, "ctr-sick.service", "MainPID") not in ("0", first)
    finally:
        host.exec("systemctl", "stop", "ctr-sick.service", check=False)
        host.exec("rm", "-f", "/etc/sdctr/containers/sick.yaml")
        host.exec("systemctl", "daemon-reload")
