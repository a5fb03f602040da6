"""Every on-disk path sdctr uses, in one place.

<root> is /var/lib/sdctr and <run> is /run/sdctr; --root/SDCTR_ROOT moves both (run becomes
<root>/run), so a test never touches the machine's own state. The unit's shell scripts
(stop.sh, poststop.sh) live beside this module: units written by earlier versions name them by
that path, so they stay here whatever moves inside the package.
"""

from __future__ import annotations

import os
from pathlib import Path

from sdctr.oci.digest import digest_hex
from sdctr.record import Record

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
STOP_SCRIPT = os.path.join(PACKAGE_DIR, "stop.sh")
POSTSTOP_SCRIPT = os.path.join(PACKAGE_DIR, "poststop.sh")
NETUP_SCRIPT = os.path.join(PACKAGE_DIR, "netup.sh")
NETDOWN_SCRIPT = os.path.join(PACKAGE_DIR, "netdown.sh")
ROOTFS_SCRIPT = os.path.join(PACKAGE_DIR, "rootfs.sh")  # units/sdctr-rootfs@.service runs it
DEFAULT_ROOT = Path("/var/lib/sdctr")
DEFAULT_RUN = Path("/run/sdctr")


class Paths(Record):
    root: Path
    run: Path

    @classmethod
    def from_root(cls, root: str | None) -> Paths:
        chosen = root or os.environ.get("SDCTR_ROOT")
        if not chosen:
            return cls(DEFAULT_ROOT, DEFAULT_RUN)
        r = Path(chosen).absolute()
        return cls(r, r / "run")

    @property
    def is_default(self) -> bool:
        return self.root == DEFAULT_ROOT

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    def container_dir(self, cid: str) -> Path:
        return self.containers / cid

    def rootfs(self, cid: str) -> Path:
        return self.run / cid / "rootfs"

    def run_dir(self, cid: str) -> Path:
        return self.run / cid

    def volume_data(self, name: str) -> Path:
        """A named volume's content (Docker's local driver layout: volumes/<name>/_data)."""
        return self.root / "volumes" / name / "_data"

    def followers(self, cid: str) -> Path:
        """Marks (one empty file an id) of the containers in this one's network namespace to start
        again with it (sdctr.runtime.hooks.follow_target, sdctr.net.joined.start_followers)."""
        return self.container_dir(cid) / "followers"

    def netns(self, cid: str) -> Path:
        """The container's pinned network namespace (a bridge network's), joined by its init."""
        return self.run / "netns" / cid

    @property
    def dns(self) -> Path:
        """User networks' DNS files (sdctr.net.dnsserver): not under <run>, which is 0700, since
        dnsmasq reads them after it dropped root; beside it, and inside a moved root."""
        return DEFAULT_RUN.with_name("sdctr-dns") if self.is_default else self.root / "dns"

    def make_private(self) -> None:
        """<root> and <run>, closed to other users (mode 0700, as runc's state directory): records
        hold the environment (secrets), and a running container's root file system may hold a
        setuid binary or a device node its root made. Whatever lies below needs no mode of its
        own for that. A looser directory an older sdctr made is tightened once."""
        for d in (self.root, self.run):
            try:
                os.makedirs(d, mode=0o700)
            except FileExistsError:
                if os.stat(d).st_mode & 0o077:
                    os.chmod(d, 0o700)

    def blob(self, digest: str) -> Path:
        """The content store's file for a verified digest."""
        return self.root / "blobs" / "sha256" / digest_hex(digest)
