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
DEFAULT_ROOT = Path("/var/lib/sdctr")
DEFAULT_RUN = Path("/run/sdctr")
# seconds: a temporary file or directory under <root> this old was left by a killed writer, and
# the next command that looks there deletes it (DESIGN.md, invariant 4)
STALE_TMP = 24 * 3600


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

    def blob(self, digest: str) -> Path:
        """The content store's file for a verified digest."""
        return self.root / "blobs" / "sha256" / digest_hex(digest)
