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
from helpers import REPO
from helpers.rootfs import BUSYBOX_ROOTFS_SH
from helpers.testhost import Machine, boot_testhost, remove_testhost, wait_for

pytestmark = pytest.mark.testhost

GENERATORS = "/usr/local/lib/systemd/system-generators"

# as a package installs them (the RPM's %files): the generator, tmpfiles.d, presets; the units
# themselves the harness puts in /usr/local/lib/systemd/system; they call /usr/bin/sdctr
INSTALL = f"""
set -e
mkdir -p {GENERATORS} /usr/local/lib/tmpfiles.d /usr/local/lib/systemd/system-preset /etc/sdctr/containers
install -m755 /tmp/sdctr-generator {GENERATORS}/sdctr-generator
install -m644 /tmp/sdctr.conf /usr/local/lib/tmpfiles.d/sdctr.conf
install -m644 /tmp/50-sdctr.preset /usr/local/lib/systemd/system-preset/50-sdctr.preset
ln -sf /usr/local/bin/sdctr /usr/bin/sdctr
systemctl daemon-reload
systemctl preset sdctr-restart.service sdctr-gc.timer
rm -rf /tmp/bb && sh -s /tmp/bb < /tmp/busybox-rootfs.sh
tar -C /tmp/bb -cf /tmp/bb.tar . && sdctr import /tmp/bb.tar busybox
"""

WEB = """\
image: busybox
command: [sh, -c, "echo hello from web; exec sleep 100000"]
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


def active(host: Machine, unit: str) -> str:
    return host.exec("systemctl", "is-active", unit, check=False).stdout.strip()


@pytest.fixture(scope="module")
def rebooted() -> Iterator[Machine]:
    host = boot_testhost("bookworm", name=f"decl{os.getpid()}")
    try:
        for src in ("units/system-generators/sdctr-generator", "units/tmpfiles.d/sdctr.conf",
                    "units/system-preset/50-sdctr.preset"):
            host.cp(REPO / src, f"/tmp/{os.path.basename(src)}")
        host.cp(BUSYBOX_ROOTFS_SH, "/tmp/busybox-rootfs.sh")
        host.sh(INSTALL)
        for name, text in (("web", WEB), ("db", DB), (TYPO_NAME, TYPO)):
            host.exec("sh", "-c", f"cat > /etc/sdctr/containers/{name}.yaml", input=text)
        host.exec("systemctl", "daemon-reload")
        host.exec("systemctl", "start", "ctr-web.service", "ctr-db.service")
        # made with run -d: back after the reboot, but for the one stopped by hand
        for name, policy in (("keeper", "always"), ("failing", "on-failure"), ("stopper", "unless-stopped"),
                             ("plain", "no")):
            host.exec("sdctr", "run", "-d", "--name", name, "--restart", policy, "busybox", "sleep", "100000")
        host.exec("sdctr", "stop", "stopper")
        host.before = sdctr_ps(host)  # type: ignore[attr-defined]
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
    logs = rebooted.exec("journalctl", "-b", "-u", "ctr-web.service", "--no-pager").stdout
    assert "hello from web" in logs  # this boot's start, not the last one's
    # the record made at the first start is kept: the file did not change
    assert rebooted.exec("sdctr", "inspect", "-f", "{{.Id}}", "web").stdout.strip() == \
        rebooted.exec("sh", "-c", "echo -n 'sdctr declared container web' | sha256sum").stdout.split()[0]


def test_systemctl_status_shows_the_declared_limits(rebooted: Machine) -> None:
    wait_for(lambda: active(rebooted, "ctr-web.service") == "active", timeout=60, what="ctr-web active")
    status = rebooted.exec("systemctl", "status", "--no-pager", "ctr-web.service", check=False).stdout
    assert "/etc/sdctr/containers/web.yaml" in status  # SourcePath: where it comes from
    assert "limit: 64.0M" in status, status
    assert re.search(r"Tasks: \d+ \(limit: 50\)", status), status
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
    assert states["stopper"] == "exited"  # unless-stopped, stopped by hand: stays stopped
    assert states["plain"] == "exited"  # --restart no
    assert active(rebooted, "sdctr-restart.service") == "active"


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
