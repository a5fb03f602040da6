"""The thin pool across a reboot (issue 12): two boots of one VM disk that keeps its writes
(`vm run --disk`), /var/lib/sdctr on it. The first runs a kept container that writes files, stops
it and takes the pool down as sdctr-thinpool.service does at shutdown. The second boots with no
pool, no loop device and no unit, and the host's setting changed to overlay: `sdctr cp` from
the stopped container and `sdctr start` bring the pool back from its files and the container
with its files, still on devicemapper (its record says so), while a new container gets overlay.
A declared container (/etc/sdctr/containers/web.yaml) on the pool rides along: in the first
boot its generated unit makes, restarts and stops it on its snapshot by systemctl alone;
in the second, with the pool down and the setting overlay, the boot's target brings it up with
its files (its record says devicemapper), and its file removed, `system gc` leaves nothing.
payloads/thin-reboot.sh does each boot. CI boots cgroup v2; SDCTR_THIN_FULL=1 boots v1 too
(RHEL7's: the declared unit's device cgroup as devices.deny, the generator on a v1 host).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from test_vm_tier import HARNESS_FAILED, VM, Boot, parse_facts

pytestmark = pytest.mark.vm

PAYLOAD = VM.parent / "payloads/thin-reboot.sh"
DISK_SIZE = 4 << 30  # sparse: the pool's 1 GiB data file and what the first boot writes
CGROUPS = ["v1", "v2"] if os.environ.get("SDCTR_THIN_FULL") == "1" else ["v2"]


def boot_with(disk: Path, phase: str, cgroup: str) -> Boot:
    started = time.monotonic()
    r = subprocess.run([str(VM), "run", "--cgroup", cgroup, "--timeout", "1500", "--disk", str(disk),
                        str(PAYLOAD), phase], capture_output=True, text=True, timeout=3600)
    result = Boot(cgroup, r.returncode, r.stdout, r.stderr, parse_facts(r.stdout))
    timings = " ".join(f"{k}={v}" for k, v in result.facts.items() if k.startswith("decl_seconds"))
    print(f"the {phase} boot took {time.monotonic() - started:.0f} s; {timings}")  # (pytest -rP shows it)
    if r.returncode == HARNESS_FAILED or result.facts.get("done") != "yes":
        raise AssertionError(f"the {phase} boot did not complete\n{result}")
    return result


@pytest.fixture(scope="module", params=CGROUPS, ids=[f"cgroup-{v}" for v in CGROUPS])
def boots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Boot, Boot]:
    disk = tmp_path_factory.mktemp("thin-reboot") / "disk.img"
    with open(disk, "wb") as f:
        os.truncate(f.fileno(), DISK_SIZE)
    try:
        return boot_with(disk, "first", request.param), boot_with(disk, "second", request.param)
    finally:
        disk.unlink()


def test_the_first_boot_leaves_a_stopped_container_and_no_pool(boots: tuple[Boot, Boot]) -> None:
    first, _ = boots
    assert first.fact("run_status") == "0", first
    assert first.fact("first_runs") == "1", first
    assert first.fact("first_storage") == "devicemapper", first
    assert first.fact("stopped_devices") == "0", first
    assert (first.fact("down_status"), first.fact("down_devices")) == ("0", "0"), first


def test_the_second_boot_starts_with_nothing_of_the_pool_up(boots: tuple[Boot, Boot]) -> None:
    _, second = boots
    assert second.fact("boot_pool_devices") == "0", second
    assert second.fact("boot_loops") == "0", second
    assert second.fact("boot_records") == "2", second  # keep, and the declared web


def test_cp_and_export_read_a_stopped_thin_container_and_diff_refuses(boots: tuple[Boot, Boot]) -> None:
    _, second = boots
    assert second.fact("cp_stopped_status") == "0", second
    assert second.fact("cp_stopped") == "written-before-the-reboot", second
    assert second.fact("cp_devices_after") == "0", second  # the copy's activation undone
    assert second.fact("export_status") == "0", second
    assert second.fact("export_has_file") == "1", second
    assert second.fact("export_devices_after") == "0", second  # export's view deactivated too
    assert second.fact("diff_status") == "125", second
    assert second.fact("diff_message_lines") in ("1", "2"), second  # the error, and its hint


def test_start_brings_the_pool_and_the_kept_container_back_with_its_files(boots: tuple[Boot, Boot]) -> None:
    _, second = boots
    assert second.fact("start_status") == "0", second
    assert second.fact("second_runs") == "2", second  # the first boot's line, and this one's
    assert second.fact("kept_file") == "written-before-the-reboot", second
    assert second.fact("second_source") == "a ctr device", second
    assert second.fact("second_devices") == "1", second


def test_info_shows_the_new_setting_and_the_old_containers_pool(boots: tuple[Boot, Boot]) -> None:
    _, second = boots
    assert second.fact("info_driver") == "overlay", second
    assert second.fact("info_in_use") == "devicemapper", second
    assert second.fact("info_by_driver") == "devicemapper 2", second
    assert second.fact("info_data_used") == "1", second
    assert int(second.fact("status_data_total")) == 1 << 30, second
    assert int(second.fact("status_metadata_total")) > 0, second
    assert second.fact("new_container_fstype") == "overlay", second


def test_rm_after_the_reboot_leaves_nothing_and_the_metadata_checks(boots: tuple[Boot, Boot]) -> None:
    _, second = boots
    assert (second.fact("rm_devices"), second.fact("rm_metadata")) == ("0", "0"), second
    assert second.fact("second_down_status") == "0", second
    assert second.fact("thin_check") == "0", second


# --- a declared container on the pool ----------------------------------------------------------

def test_a_declared_container_runs_on_its_snapshot_through_systemctl_alone(boots: tuple[Boot, Boot]) -> None:
    first, _ = boots
    assert first.fact("decl_requires_rootfs") == "1", first  # its generated unit: Requires= the rootfs unit
    assert first.fact("decl_start_status") == "0", first
    assert first.fact("decl_storage") == "devicemapper", first
    assert first.fact("decl_source") == "a ctr device", first


def test_systemctl_restart_reactivates_the_same_snapshot_and_stop_hands_it_back(
        boots: tuple[Boot, Boot]) -> None:
    first, _ = boots
    assert first.fact("decl_restart_status") == "0", first
    assert first.fact("decl_restart_same_device") == "yes", first
    assert first.fact("decl_restart_file") == "declared-before-the-reboot", first
    assert first.fact("decl_stop_rootfs_unit") == "inactive", first  # in 30 s at most
    assert first.fact("decl_stop_devices") == "0", first
    assert first.fact("decl_runs") == "2", first


def test_the_boot_brings_the_pool_and_the_declared_container_back_with_its_files(
        boots: tuple[Boot, Boot]) -> None:
    _, second = boots
    assert second.fact("decl_kept_metadata") == "1", second  # kept through `rm -f keep`
    assert second.fact("decl_boot_pool_devices") == "0", second
    assert second.fact("decl_boot_wanted") == "1", second
    assert second.fact("decl_boot_active") == "active", second
    assert second.fact("decl_boot_runs") == "3", second  # a stop, a start, and a reboot later
    assert second.fact("decl_boot_file") == "declared-before-the-reboot", second
    assert second.fact("decl_boot_source") == "a ctr device", second
    assert second.fact("decl_boot_pool_unit") == "active", second
    assert second.fact("decl_pool_before_rootfs") == "yes", second


def test_a_removed_declared_container_leaves_nothing_of_its_device(boots: tuple[Boot, Boot]) -> None:
    _, second = boots
    assert second.fact("decl_gc") == "1", second
    assert second.fact("decl_gone_records") == "0", second
    assert (second.fact("decl_gone_devices"), second.fact("decl_gone_metadata")) == ("0", "0"), second
    assert second.fact("decl_gone_rootfs_unit") in ("inactive", "unknown"), second
    assert second.fact("decl_thin_check") == "0", second
