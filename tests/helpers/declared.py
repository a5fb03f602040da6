"""A test host set up as the package leaves one, for declared containers and reboots: the
generator, tmpfiles.d and the presets installed where a package puts them (the units themselves
are in /usr/local/lib/systemd/system already: `testhost up` copies units/; they call
/usr/bin/sdctr), the boot-time units enabled by the preset, and busybox imported. Shared by the
testhost tier's declared-container, update and boot-unit tests."""

from __future__ import annotations

import json
import os

from helpers import REPO
from helpers.rootfs import BUSYBOX_ROOTFS_SH
from helpers.testhost import Machine

GENERATORS = "/usr/local/lib/systemd/system-generators"
FILES = ("units/system-generators/sdctr-generator", "units/tmpfiles.d/sdctr.conf",
         "units/system-preset/50-sdctr.preset")
INSTALL = f"""
set -e
mkdir -p {GENERATORS} /usr/local/lib/tmpfiles.d /usr/local/lib/systemd/system-preset /etc/sdctr/containers
install -m755 /tmp/sdctr-generator {GENERATORS}/sdctr-generator
install -m644 /tmp/sdctr.conf /usr/local/lib/tmpfiles.d/sdctr.conf
install -m644 /tmp/50-sdctr.preset /usr/local/lib/systemd/system-preset/50-sdctr.preset
ln -sf /usr/local/bin/sdctr /usr/bin/sdctr
systemctl daemon-reload
systemctl preset sdctr-setup.service sdctr-restart.service sdctr-gc.timer
rm -rf /tmp/bb && sh -s /tmp/bb < /tmp/busybox-rootfs.sh
tar -C /tmp/bb -cf /tmp/bb.tar . && sdctr import /tmp/bb.tar busybox
"""


def install_declared(host: Machine, files: dict[str, str] | None = None) -> None:
    """The package's boot-time pieces installed, busybox imported, and `files` (name -> YAML)
    written to /etc/sdctr/containers, their units generated (not started)."""
    for src in FILES:
        host.cp(REPO / src, f"/tmp/{os.path.basename(src)}")
    host.cp(BUSYBOX_ROOTFS_SH, "/tmp/busybox-rootfs.sh")
    host.sh(INSTALL)
    for name, text in (files or {}).items():
        host.exec("sh", "-c", f"cat > /etc/sdctr/containers/{name}.yaml", input=text)
    host.exec("systemctl", "daemon-reload")


def active(host: Machine, unit: str) -> str:
    return host.exec("systemctl", "is-active", unit, check=False).stdout.strip()  # type: ignore[no-any-return]


def inspect(host: Machine, name: str) -> dict:  # type: ignore[type-arg]
    return json.loads(host.exec("sdctr", "inspect", name).stdout)[0]  # type: ignore[no-any-return]


def unit_of(host: Machine, name: str) -> str:
    return f"ctr-{inspect(host, name)['Id'][:12]}.service"


def show(host: Machine, unit: str, prop: str) -> str:
    return host.exec("systemctl", "show", "-P", prop, unit).stdout.strip()  # type: ignore[no-any-return]
