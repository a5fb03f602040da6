"""The thin-pool driver on a kernel with dm-thin: the storage conformance suite over it, two
containers from one image end to end, and sdctr killed at every step of a pool transaction with
thin_check and a leak check after each (payloads/thin.sh does it all in one boot per cgroup
version and reports "FACT name=value" lines).

The guest gets this checkout's sdctr from the harness; the tests travel in the payload itself: a
shell script carrying a tarball of tests/ and pyproject.toml, unpacked before thin.sh runs.

CI's share is bounded (7 minutes measured where the whole is about 50): one boot (cgroup v1, RHEL7's;
nothing here but the containers that `works_` starts depends on the version, and test_thin_run.py
boots v2) and two of the ten kill steps, the two after which the pool and sdctr's metadata
disagree with a transaction open: create:messaged (the pool holds a device no metadata names: a
leak unless rolled back) and delete:messaged (the pool has deleted a device the metadata still
names: lost unless rolled forward). The unit tier (test_thin_transactions.py) runs all ten
against a fake pool. SDCTR_THIN_FULL=1 runs the whole: both cgroup versions, every step.
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
FULL = os.environ.get("SDCTR_THIN_FULL") == "1"
# where thin.sh can kill sdctr (the driver's _step names)
ALL_STEPS = [*(f"create:{s}" for s in ("opened", "messaged", "saved", "before-commit", "committed")),
             *(f"delete:{s}" for s in ("marked", "opened", "messaged", "before-commit", "committed"))]
STEPS = ALL_STEPS if FULL else ["create:messaged", "delete:messaged"]  # CI's: the riskiest (above)
CGROUPS = ["v1", "v2"] if FULL else ["v1"]


def fact_name(step: str) -> str:
    """A step as thin.sh's facts name it: "create:before-commit" -> "create_before_commit"."""
    return step.replace(":", "_").replace("-", "_")


def bundle(path: Path) -> Path:
    """A payload that unpacks tests/ and pyproject.toml into /root/checkout and runs thin.sh there,
    killing sdctr at STEPS."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(REPO / "pyproject.toml", arcname="pyproject.toml")
        t.add(REPO / "tests", arcname="tests",
              filter=lambda i: None if "__pycache__" in i.name or i.name.endswith(".pyc") else i)
    path.write_text("#!/bin/sh\nset -e\nrm -rf /root/checkout && mkdir -p /root/checkout\n"
                    "base64 -d <<'EOF' | tar -xz -C /root/checkout\n"
                    f"{base64.encodebytes(buf.getvalue()).decode()}EOF\n"
                    f"exec sh /root/checkout/tests/vm/payloads/thin.sh /root/checkout {' '.join(STEPS)}\n")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module", params=CGROUPS, ids=[f"cgroup-{v}" for v in CGROUPS])
def boot(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Boot:
    payload = bundle(tmp_path_factory.mktemp("thin") / "payload")
    r = subprocess.run([str(VM), "run", "--cgroup", request.param, "--timeout", "1800", str(payload)],
                       capture_output=True, text=True, timeout=3600)
    result = Boot(request.param, r.returncode, r.stdout, r.stderr, parse_facts(r.stdout))
    if r.returncode == HARNESS_FAILED or "final_containers" not in result.facts:
        raise AssertionError(f"the VM run did not complete\n{result}")
    return result


def test_the_conformance_suite_passes_over_devicemapper(boot: Boot) -> None:
    assert boot.fact("conformance_status") == "0", boot
    assert boot.fact("leftover_devices") == "0", boot  # every test's pool taken down
    assert boot.fact("leftover_loops") == "0", boot


def test_auto_picks_devicemapper_where_dm_thin_is(boot: Boot) -> None:
    assert boot.fact("auto_driver") == "devicemapper", boot
    assert boot.fact("e2e_storage") == "devicemapper", boot
    assert boot.fact("e2e_a_source").startswith("/dev/mapper/sdctr-"), boot


def test_two_containers_of_one_image_see_only_their_own_files(boot: Boot) -> None:
    assert boot.fact("e2e_a_sees") == "a-file", boot
    assert boot.fact("e2e_b_sees") == "b-file", boot
    assert boot.fact("e2e_motd") == "from the image", boot


def test_removing_a_container_while_another_runs_is_never_busy(boot: Boot) -> None:
    """Docker's "device or resource busy": b, started after a, holds no copy of a's mount in its
    mount namespace (its init detached the host's mounts), so `rm -f` of a while b runs removes
    a's device at once; and even a namespace that holds a copy does not keep the device."""
    assert boot.fact("e2e_b_holds_a") == "0", boot
    assert boot.fact("e2e_rm_a_status") == "0", boot
    assert boot.fact("e2e_rm_a_devices") == "0", boot
    assert boot.fact("e2e_b_after_rm_a") == "b", boot
    # the check can see a copy: a process that made its mount namespace while c ran holds one;
    # rm still takes c's device (removing c's mount point detaches that copy) and succeeds
    assert boot.fact("e2e_holder_holds_c") == "1", boot
    assert boot.fact("e2e_rm_held_status") == "0", boot
    assert boot.fact("e2e_rm_held_devices") == "0", boot
    assert boot.fact("e2e_holder_holds_c_after") == "0", boot


def test_the_pool_holds_exactly_what_the_metadata_says(boot: Boot) -> None:
    assert boot.fact("e2e_active_devices") == "2", boot
    assert boot.fact("e2e_consistency") == "consistent", boot
    assert boot.fact("e2e_after_rm_active") == "0", boot
    assert boot.fact("e2e_after_rm_consistency") == "consistent", boot


@pytest.mark.parametrize("step", [fact_name(s) for s in STEPS])
def test_a_kill_at_any_step_leaves_a_sound_pool(boot: Boot, step: str) -> None:
    assert boot.fact(f"killed_{step}") == "137", boot  # it was killed there, by SIGKILL
    assert boot.fact(f"thin_check_{step}") == "0", boot
    assert boot.fact(f"consistency_{step}") == "consistent", boot  # nothing leaked or lost
    assert boot.fact(f"works_{step}") == "ok", boot
    if step.startswith("delete_"):  # the container whose `rm` was killed: a second one removes it
        assert boot.fact(f"removed_{step}") == "0", boot


def test_nothing_is_left_at_the_end(boot: Boot) -> None:
    assert boot.fact("final_consistency") == "consistent", boot
    assert boot.fact("final_containers") == "0", boot
    # where the boot's time went (shown with pytest -rP): the README's estimate of CI's share
    print({k: v for k, v in boot.facts.items() if k.startswith("seconds_")})
