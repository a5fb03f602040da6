"""The binary RPM installed into a test host (Debian, booted systemd) as `rpm -i --nodeps` would
on RHEL, then removed: the preset enables the boot-time units, sdctr runs from the installed files
only, and `rpm -e` leaves no file the package owned and no enabled unit, keeping a changed
sdctr.yaml as .rpmsave.

Debian's rpm is outside the test host: it installs with --root into the host's root, and the
package's own scriptlets (rpm -qp --scripts, the same text) run inside the host with the argument
rpm gives them, as rpm's chroot would hide the host's systemd (systemctl ignores --now and
daemon-reload in a chroot)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, checkout_version, skip_or_fail
from helpers.testhost import Machine, boot_testhost, remove_testhost

pytestmark = pytest.mark.testhost

UNITS = ("sdctr-gc.timer", "sdctr-restart.service")
# the checkout's copy that `testhost up` installs, which would shadow the package's files
CHECKOUT_COPY = ("rm -rf /usr/local/lib/python3*/dist-packages/sdctr /usr/local/bin/sdctr "
                 "/usr/local/lib/systemd/system/sdctr* && systemctl daemon-reload")


@pytest.fixture(scope="module")
def rpm_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rpms")
    r = subprocess.run([str(REPO / "packaging/rpm/build"), str(out)], capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0:
        skip_or_fail(f"packaging/rpm/build failed (tests/setup installs rpmbuild):\n{r.stderr}")
    return out / f"sdctr-{checkout_version()}-1.noarch.rpm"


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


def rpm(host: Machine, *args: str) -> str:
    root = f"/proc/{host.state()['init_pid']}/root"
    # Debian's rpm keeps its database in ~/.rpmdb: the host's own, inside its root
    r = subprocess.run(["rpm", "--root", root, "--dbpath", "/var/lib/rpm", *args], capture_output=True,
                       text=True)
    assert r.returncode == 0, f"rpm {' '.join(args)} exited {r.returncode}:\n{r.stderr}"
    return r.stdout


def scriptlet(rpm_file: Path, tag: str) -> str:
    text = query(rpm_file, "--qf", f"%{{{tag}}}")
    return "" if text == "(none)" else text


def run_scriptlet(host: Machine, rpm_file: Path, tag: str, arg: str) -> None:
    host.exec("sh", "-c", scriptlet(rpm_file, tag), tag.lower(), arg)


def test_install_enable_run_and_remove_cleanly(rpm_file: Path, host: Machine) -> None:
    owned = query(rpm_file, "-l").split()
    rpm(host, "--initdb")
    rpm(host, "-i", "--nodeps", "--noscripts", str(rpm_file))
    run_scriptlet(host, rpm_file, "POSTIN", "1")  # $1: the number of installed versions after
    host.exec("systemctl", "daemon-reload")  # RHEL's systemd does this in its file trigger

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
    assert module == "/usr/lib/python3/dist-packages/sdctr/__init__.py"
    assert checkout_version() in host.exec("sdctr", "--version").stdout
    host.exec("sdctr", "ps", "-a")
    host.exec("systemctl", "start", "sdctr-gc.service")  # oneshot: fails here if gc fails
    host.exec("systemctl", "start", "sdctr-restart.service")

    host.sh("echo '# changed by the administrator' >> /etc/sdctr/sdctr.yaml")
    run_scriptlet(host, rpm_file, "PREUN", "0")  # $1: 0 versions left, a removal
    rpm(host, "-e", "--nodeps", "--noscripts", "sdctr")
    run_scriptlet(host, rpm_file, "POSTUN", "0")

    # /var/lib/sdctr is the test host's bind mount (and kept by rpm while it holds anything);
    # /etc/sdctr holds the .rpmsave
    kept = {"/var/lib/sdctr", "/etc/sdctr"}
    left = host.sh("for f in " + " ".join(sorted(set(owned) - kept)) +
                   "; do [ -e $f ] && echo $f; done; true").stdout.split()
    assert left == [], f"rpm -e left files the package owned: {left}"
    assert host.sh("ls /etc/sdctr").stdout.split() == ["sdctr.yaml.rpmsave"]
    enabled = host.sh("ls /etc/systemd/system/*.wants/ | grep sdctr; true").stdout
    assert enabled == "", f"units still enabled: {enabled}"
    timer = host.exec("systemctl", "is-active", "sdctr-gc.timer", check=False).stdout.strip()
    assert timer == "inactive", timer
