"""The fault campaign (tests/faults) on a thin host: the user-level faults that make, activate,
deactivate or delete a thin device (kill -9 of `run -d`, of a foreground `run --rm`, of `rm -f`,
of `stop`, `stop -t 0`, and of the rootfs unit's own script sdctr/rootfs.sh as it starts and
stops, --rm's pool transaction included), each followed by sdctr's own recovery (the next
command, then `system check --repair`) and the independent checker with the pool's invariants:
no device leaked or lost (the pool's devices, thin_ls on a metadata snapshot, against the
driver's JSON metadata; dmsetup ls against the running containers), no mount or rootfs unit left,
no transaction open, thin_check passing with the pool taken down after each trial, and sdctr
still runs a container.

tests/faults runs the table directly on the VM's own systemd (--local --thin; the campaign's
test host cannot have device-mapper on a machine without it). One boot, cgroup v2, with the
checkout's tests/ carried in the payload as test_thin.py carries them. CI runs a bounded sample
(SAMPLE: one trial per fault, each fault at another moment of the sweep); SDCTR_THIN_FULL=1 runs
FULL_TRIALS per fault (SDCTR_THIN_FAULT_TRIALS, default 10: each moment of tests/faults's DELAYS
once), the table the README records.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from test_vm_tier import HARNESS_FAILED, VM, Boot, parse_facts

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parents[2]
PAYLOAD = VM.parent / "payloads/thin-faults.sh"
FULL = os.environ.get("SDCTR_THIN_FULL") == "1"
FULL_TRIALS = int(os.environ.get("SDCTR_THIN_FAULT_TRIALS", "10"))
SAMPLE = 1  # a trial per fault, each at another moment of the sweep (--spread)
TRIALS = FULL_TRIALS if FULL else SAMPLE


def bundle(path: Path, *args: str) -> Path:
    """A payload that unpacks tests/ and pyproject.toml into /root/checkout and runs
    payloads/thin-faults.sh there with ARGS."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(REPO / "pyproject.toml", arcname="pyproject.toml")
        t.add(REPO / "tests", arcname="tests",
              filter=lambda i: None if "__pycache__" in i.name or i.name.endswith(".pyc") else i)
    path.write_text("#!/bin/sh\nset -e\nrm -rf /root/checkout && mkdir -p /root/checkout\n"
                    "base64 -d <<'EOF' | tar -xz -C /root/checkout\n"
                    f"{base64.encodebytes(buf.getvalue()).decode()}EOF\n"
                    "exec sh /root/checkout/tests/vm/payloads/thin-faults.sh /root/checkout "
                    f"{' '.join(args)}\n")
    path.chmod(0o755)
    return path


def rows(stdout: str) -> dict[str, list[str]]:
    """The campaign's table: fault -> [trials, kills that landed, violations after the next
    command, after --repair]."""
    found = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 5 and cells[1].isdigit():
            found[cells[0]] = cells[1:]
    return found


@pytest.fixture(scope="module")
def boot(tmp_path_factory: pytest.TempPathFactory) -> Boot:
    args = ["--trials", str(TRIALS)] if FULL else ["--trials", str(SAMPLE), "--spread"]
    payload = bundle(tmp_path_factory.mktemp("thin-faults") / "payload", *args)
    timeout = 600 + TRIALS * 8 * 60
    r = subprocess.run([str(VM), "run", "--cgroup", "v2", "--timeout", str(timeout), str(payload)],
                       capture_output=True, text=True, timeout=timeout + 1800)  # a cold image build
    result = Boot("v2", r.returncode, r.stdout, r.stderr, parse_facts(r.stdout))
    if r.returncode == HARNESS_FAILED or result.facts.get("done") != "yes":
        raise AssertionError(f"the VM run did not complete\n{result}")
    return result


def test_the_campaign_ran_on_a_thin_host(boot: Boot) -> None:
    assert boot.fact("storage") == "devicemapper", boot
    table = rows(boot.stdout)
    assert len(table) == 8 and all(r[0] == str(TRIALS) for r in table.values()), boot
    # most kills hit a live process: the sweep's moments are inside the commands, not after them
    assert sum(int(r[1]) for r in table.values() if r[1].isdigit()) >= len(table) * TRIALS // 2, boot
    print(boot.stdout)  # the table and a line per trial (pytest -rP)
    print({k: v for k, v in boot.facts.items() if k.startswith("seconds_")})


def test_every_invariant_holds_after_sdctrs_own_recovery(boot: Boot) -> None:
    table = rows(boot.stdout)
    assert not [f for f, r in table.items() if r[3] != "0"], boot
    assert boot.fact("campaign_status") == "0", boot


def test_the_pool_is_sound_at_the_end(boot: Boot) -> None:
    assert boot.fact("final_down") == "0", boot  # nothing of it mounted or held
    assert boot.fact("final_thin_check") == "0", boot
