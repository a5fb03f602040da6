"""The binary RPM installed into a test host (Debian, booted systemd) as `rpm -i --nodeps` would
on RHEL, upgraded, then removed: the preset enables the boot-time units, the README's demo runs
from the installed files only, `rpm -U` to a newer release keeps the changed configuration, the
enabled timer and the running containers, and `rpm -e` leaves no file the package owned and no
enabled unit, keeping a changed sdctr.yaml as .rpmsave.

Debian's rpm is outside the test host: it installs with --root into the host's root, and the
package's own scriptlets (rpm -qp --scripts, the same text) run inside the host with the argument
rpm gives them, as rpm's chroot would hide the host's systemd (systemctl ignores --now and
daemon-reload in a chroot)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, checkout_version, skip_or_fail
from helpers.rootfs import BUSYBOX_ROOTFS_SH
from helpers.testhost import Machine, boot_testhost, remove_testhost, wait_for

pytestmark = pytest.mark.testhost

UNITS = ("sdctr-gc.timer", "sdctr-setup.service", "sdctr-restart.service")
SITELIB = "/usr/lib/python3/dist-packages"  # macros.debian's %python3_sitelib
# the checkout's copy that `testhost up` installs, which would shadow the package's files
CHECKOUT_COPY = ("rm -rf /usr/local/lib/python3*/dist-packages/sdctr /usr/local/bin/sdctr "
                 "/usr/local/lib/systemd/system/sdctr* && systemctl daemon-reload")


@pytest.fixture(scope="module")
def rpm_files(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Release 1, and release 2 of the same checkout (build --release 2): the upgrade's pair."""
    out = tmp_path_factory.mktemp("rpms")
    for release in ("1", "2"):
        r = subprocess.run([str(REPO / "packaging/rpm/build"), "--release", release, str(out)],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            skip_or_fail(f"packaging/rpm/build failed (tests/setup installs rpmbuild):\n{r.stderr}")
    return {n: out / f"sdctr-{checkout_version()}-{n}.noarch.rpm" for n in (1, 2)}


def query(rpm_file: Path, *args: str) -> str:
    # Debian's rpm makes ~/.rpmdb even to query a file: a home of the test's own, beside the RPM
    return subprocess.run(["rpm", "-qp", *args, str(rpm_file)], check=True, capture_output=True, text=True,
                          env={**os.environ, "HOME": str(rpm_file.parent)}).stdout


@pytest.fixture
def host() -> Iterator[Machine]:
    machine = boot_testhost()
    try:
        machine.sh(CHECKOUT_COPY)
        yield machine
    finally:
        remove_testhost(machine)
        shutil.rmtree(rpmdb(machine), ignore_errors=True)


def rpmdb(host: Machine) -> Path:
    """The test host's rpm database, a directory of the test's own on this machine. Debian's rpm
    (4.18) with --root /proc/PID/root makes the --dbpath directory and its lock inside the root,
    but opens the sqlite database at that path on this machine: --dbpath /var/lib/rpm wrote the
    machine's own /var/lib/rpm (seen: a package left there by one run made the next one's
    `rpm -i` fail as already installed)."""
    return Path(tempfile.gettempdir()) / f"sdctr-rpmdb-{host.name}"


def rpm(host: Machine, *args: str) -> str:
    root = f"/proc/{host.state()['init_pid']}/root"
    rpmdb(host).mkdir(exist_ok=True)
    r = subprocess.run(["rpm", "--root", root, "--dbpath", str(rpmdb(host)), *args], capture_output=True,
                       text=True)
    assert r.returncode == 0, f"rpm {' '.join(args)} exited {r.returncode}:\n{r.stderr}"
    return r.stdout


def scriptlet(rpm_file: Path, tag: str) -> str:
    text = query(rpm_file, "--qf", f"%{{{tag}}}")
    return "" if text == "(none)" else text


def run_scriptlet(host: Machine, rpm_file: Path, tag: str, arg: str) -> None:
    host.exec("sh", "-c", scriptlet(rpm_file, tag), tag.lower(), arg)


# Each step as rpm runs it, the scriptlets inside the host with the argument rpm gives them: the
# number of this package's versions installed once the step is over.
def install(host: Machine, rpm_file: Path) -> None:
    rpm(host, "--initdb")
    rpm(host, "-i", "--nodeps", "--noscripts", str(rpm_file))
    run_scriptlet(host, rpm_file, "POSTIN", "1")
    host.exec("systemctl", "daemon-reload")  # RHEL's systemd does this in its file trigger


def upgrade(host: Machine, old: Path, new: Path) -> None:
    """rpm -U's order: the new package's files and %post, then the old one's %preun, its files
    gone, its %postun."""
    rpm(host, "-U", "--nodeps", "--noscripts", str(new))
    run_scriptlet(host, new, "POSTIN", "2")
    run_scriptlet(host, old, "PREUN", "1")
    run_scriptlet(host, old, "POSTUN", "1")


def remove(host: Machine, rpm_file: Path) -> None:
    run_scriptlet(host, rpm_file, "PREUN", "0")
    rpm(host, "-e", "--nodeps", "--noscripts", "sdctr")
    run_scriptlet(host, rpm_file, "POSTUN", "0")


def assert_removed_cleanly(host: Machine, rpm_file: Path) -> None:
    """No file the package owned, no enabled unit, the timer stopped; a changed sdctr.yaml kept as
    .rpmsave."""
    owned = query(rpm_file, "-l").split()
    # /var/lib/sdctr is the test host's bind mount (and kept by rpm while it holds anything);
    # /etc/sdctr holds the .rpmsave
    kept = {"/var/lib/sdctr", "/etc/sdctr"}
    left = host.sh("for f in " + " ".join(sorted(set(owned) - kept)) +
                   "; do [ -e $f ] && echo $f; done; true").stdout.split()
    inside = host.sh("find /run/sdctr -maxdepth 2; sdctr ps -a --no-trunc; true").stdout if left else ""
    assert left == [], f"rpm -e left files the package owned: {left}\n{inside}"
    assert host.sh("ls /etc/sdctr").stdout.split() == ["sdctr.yaml.rpmsave"]
    enabled = host.sh("ls /etc/systemd/system/*.wants/ | grep sdctr; true").stdout
    assert enabled == "", f"units still enabled: {enabled}"
    timer = host.exec("systemctl", "is-active", "sdctr-gc.timer", check=False).stdout.strip()
    assert timer == "inactive", timer


def import_busybox(host: Machine) -> None:
    host.cp(BUSYBOX_ROOTFS_SH, "/tmp/busybox-rootfs.sh")
    host.sh("rm -rf /tmp/bb && sh -s /tmp/bb < /tmp/busybox-rootfs.sh && tar -C /tmp/bb -cf /tmp/bb.tar . "
            "&& sdctr import /tmp/bb.tar busybox")


def main_pid(host: Machine, unit: str) -> str:
    return host.exec("systemctl", "show", "-p", "MainPID", "--value", unit).stdout.strip()


# What `rpm -i --nodeps` skips, met by Debian's packages in the test host: each of the RPM's
# Requires (RHEL's names) with the Debian package that provides the same; a path, by the file
DEBIAN = {"python3": "python3", "python3-pyyaml": "python3-yaml", "python3-jinja2": "python3-jinja2",
          "python3-httpx": "python3-httpx", "systemd": "systemd", "systemd-libs": "libsystemd0",
          "util-linux": "util-linux", "iproute": "iproute2", "nftables": "nftables", "tar": "tar"}


def assert_requires_met(host: Machine, rpm_file: Path) -> None:
    requires = {line.split()[0] for line in query(rpm_file, "--requires").splitlines()
                if not line.startswith(("rpmlib(", "config("))}
    paths = {r for r in requires if r.startswith("/")}
    assert requires - paths == set(DEBIAN), f"a Requires without its Debian package here: {requires}"
    for path in paths:
        host.exec("test", "-x", path)
    missing = [deb for deb in DEBIAN.values()
               if host.exec("dpkg-query", "-W", "-f", "${Status}", deb, check=False).stdout
               != "install ok installed"]
    assert not missing, f"the test host lacks {missing}"


def test_install_enable_run_and_remove_cleanly(rpm_files: dict[int, Path], host: Machine) -> None:
    rpm_file = rpm_files[1]
    assert_requires_met(host, rpm_file)
    install(host, rpm_file)

    for unit in UNITS:
        assert host.exec("systemctl", "is-enabled", unit).stdout.strip() == "enabled", unit
    host.exec("systemctl", "start", "sdctr-gc.timer")
    status = host.exec("systemctl", "status", "--no-pager", "sdctr-gc.timer").stdout
    # the package's unit, not a copy elsewhere (bookworm's systemd names /usr/lib by /lib)
    loaded = r"\((/usr)?/lib/systemd/system/sdctr-gc.timer; enabled; preset: enabled\)"
    assert re.search(loaded, status), status
    assert "active (waiting)" in status, status
    assert host.sh("stat -c %a /run/sdctr").stdout.strip() == "700"  # %post's tmpfiles

    # sdctr from the installed files only: the command, the module, the gc the timer runs
    assert host.sh("command -v sdctr").stdout.strip() == "/usr/bin/sdctr"
    module = host.exec("python3", "-c", "import sdctr; print(sdctr.__file__)").stdout.strip()
    assert module == f"{SITELIB}/sdctr/__init__.py"
    assert checkout_version() in host.exec("sdctr", "--version").stdout
    host.exec("sdctr", "ps", "-a")
    host.exec("systemctl", "start", "sdctr-gc.service")  # oneshot: fails here if gc fails
    host.exec("systemctl", "start", "sdctr-restart.service")

    run_the_readmes_demo(host)

    host.sh("echo '# changed by the administrator' >> /etc/sdctr/sdctr.yaml")
    remove(host, rpm_file)
    assert_removed_cleanly(host, rpm_file)


def run_the_readmes_demo(host: Machine) -> None:
    """./demo's steps, with the installed /usr/bin/sdctr: the unit calls back into the package's
    files (its sdctr, stop.sh and poststop.sh), never a checkout's."""
    import_busybox(host)
    cid = host.exec("sdctr", "run", "-d", "--name", "web", "-c", "512", "-m", "64m", "busybox", "sh", "-c",
                    "echo hello from $(hostname); while true; do sleep 1; done").stdout.strip()
    unit = f"ctr-{cid[:12]}"
    assert "web" in host.exec("sdctr", "ps").stdout
    status = host.exec("systemctl", "status", "--no-pager", unit).stdout
    assert "active (running)" in status and "64.0M" in status, status
    commands = host.exec("systemctl", "show", "-p", "ExecStartPre", "-p", "ExecStart", "-p", "ExecStop",
                         "-p", "ExecStopPost", unit).stdout
    programs = set(re.findall(r"path=(\S+)", commands)) | set(re.findall(r"argv\[\]=\S+ (/\S+)", commands))
    assert "/usr/bin/sdctr" in programs, commands
    assert f"{SITELIB}/sdctr/stop.sh" in programs, commands
    foreign = {p for p in programs if p.startswith(("/usr/local", str(REPO)))}
    assert not foreign, f"the unit runs files that are not the package's: {foreign}"
    wait_for(lambda: "hello from" in host.exec("sdctr", "logs", "web").stdout, what="web's output")
    assert "hello from" in host.exec("journalctl", "--no-pager", "-u", unit).stdout
    host.exec("sdctr", "stop", "web")
    assert re.search(r"web\s*$", host.exec("sdctr", "ps", "-a").stdout, re.M)
    host.exec("sdctr", "rm", "web")
    assert "web" not in host.exec("sdctr", "ps", "-a").stdout


DECLARED = "image: busybox\ncommand: sleep 100000\n"


def test_upgrade_keeps_the_configuration_the_timer_and_running_containers(
        rpm_files: dict[int, Path], host: Machine) -> None:
    old, new = rpm_files[1], rpm_files[2]
    install(host, old)
    host.exec("systemctl", "start", "sdctr-gc.timer")
    import_busybox(host)
    cid = host.exec("sdctr", "run", "-d", "--name", "kept", "busybox", "sleep", "100000").stdout.strip()
    running = f"ctr-{cid[:12]}"
    host.exec("sh", "-c", "cat > /etc/sdctr/containers/db.yaml", input=DECLARED)
    host.exec("systemctl", "daemon-reload")
    host.exec("systemctl", "start", "ctr-db.service")
    changed = "# changed by the administrator\nnetwork:\n  bridge: sdctr9\n"
    host.sh(f"printf '{changed}' >> /etc/sdctr/sdctr.yaml")
    config = host.exec("cat", "/etc/sdctr/sdctr.yaml").stdout
    pids = {unit: main_pid(host, unit) for unit in (running, "ctr-db.service")}
    assert all(pid != "0" for pid in pids.values()), pids

    upgrade(host, old, new)

    assert rpm(host, "-q", "sdctr").strip() == f"sdctr-{checkout_version()}-2.noarch"
    assert host.exec("cat", "/etc/sdctr/sdctr.yaml").stdout == config, "%config(noreplace) replaced"
    assert host.sh("ls /etc/sdctr").stdout.split() == ["containers", "sdctr.yaml"], "no .rpmnew/.rpmsave"
    for unit in UNITS:
        assert host.exec("systemctl", "is-enabled", unit).stdout.strip() == "enabled", unit
    assert host.exec("systemctl", "is-active", "sdctr-gc.timer").stdout.strip() == "active"
    # the containers were not stopped or restarted: the same main process runs
    assert {unit: main_pid(host, unit) for unit in pids} == pids
    for unit in pids:
        assert host.exec("systemctl", "is-active", unit).stdout.strip() == "active", unit
    ps = host.exec("sdctr", "ps").stdout
    assert "kept" in ps and "db" in ps, ps
    host.exec("sdctr", "exec", "kept", "true")  # the new package's sdctr talks to the old container

    # an administrator's removal: the containers first, then the package
    host.exec("systemctl", "stop", "ctr-db.service")
    host.exec("rm", "/etc/sdctr/containers/db.yaml")
    host.exec("sdctr", "rm", "-f", "kept", "db")  # db: the declared container's record
    host.exec("systemctl", "daemon-reload")
    remove(host, new)
    assert_removed_cleanly(host, new)
