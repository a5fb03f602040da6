"""The devicemapper driver over an LVM thin pool (issue 12): one boot (cgroup v2: nothing here
depends on the cgroup version) in which `sdctr storage setup --lvm VG` makes the pool in a fresh
volume group over a loop device, two containers run on it, LVM and sdctr are seen to keep out of
each other's way, rm leaves nothing, thin_check passes, and the volume group is removed.
payloads/thin-lvm.sh does it all; the unit tier (tests/unit/test_lvm_pool.py) has the command
lines and refusals without LVM.
"""

from __future__ import annotations

import subprocess

import pytest
from test_vm_tier import HARNESS_FAILED, VM, Boot, parse_facts

pytestmark = pytest.mark.vm

PAYLOAD = VM.parent / "payloads/thin-lvm.sh"


@pytest.fixture(scope="module")
def boot() -> Boot:
    r = subprocess.run([str(VM), "run", "--cgroup", "v2", "--timeout", "1200", str(PAYLOAD)],
                       capture_output=True, text=True, timeout=3600)
    result = Boot("v2", r.returncode, r.stdout, r.stderr, parse_facts(r.stdout))
    if r.returncode == HARNESS_FAILED or result.facts.get("done") != "yes":
        raise AssertionError(f"the VM run did not complete\n{result}")
    return result


def test_setup_refuses_a_missing_group_and_a_size_that_does_not_fit(boot: Boot) -> None:
    assert boot.fact("vg_status") == "0", boot
    assert (boot.fact("novg_status"), boot.fact("novg_message")) == ("125", "1"), boot
    assert (boot.fact("toobig_status"), boot.fact("toobig_message")) == ("125", "1"), boot
    assert boot.fact("toobig_lvs") == "0", boot  # nothing made


def test_setup_makes_dockers_pool_and_names_it_in_sdctr_yaml(boot: Boot) -> None:
    assert (boot.fact("setup_status"), boot.fact("setup_made_line")) == ("0", "1"), boot
    # a thin pool, 512 KiB chunks, no zeroing of new blocks, the size asked for
    assert boot.fact("lvs_pool") == "thin-pool|0.50m|0|1024.00m", boot
    assert boot.fact("config_thinpool") == "sdctrvg/sdctr-pool", boot
    assert boot.fact("config_driver") == "devicemapper", boot
    assert (boot.fact("config_bridge"), boot.fact("config_comment")) == ("sdctr9", "1"), boot  # kept
    assert (boot.fact("again_status"), boot.fact("again_line")) == ("0", "1"), boot


def test_two_containers_run_on_thin_devices_of_the_lvm_pool(boot: Boot) -> None:
    assert (boot.fact("run_a_status"), boot.fact("run_b_status")) == ("0", "0"), boot
    assert (boot.fact("a_sees"), boot.fact("b_sees")) == ("a", "b"), boot
    assert boot.fact("ctr_devices") == "2", boot
    assert boot.fact("ctr_devices_on_the_lvm_pool") == "2", boot
    assert (boot.fact("loop_files"), boot.fact("sdctr_loops")) == ("0", "0"), boot


def test_info_shows_the_pools_origin_and_use(boot: Boot) -> None:
    assert boot.fact("info_origin") == "LVM thin pool sdctrvg/sdctr-pool", boot
    assert boot.fact("info_pool_name") == "sdctrvg-sdctr--pool", boot
    assert boot.fact("info_blocksize") == "524kB", boot  # 512 KiB, as Docker writes sizes
    assert int(boot.fact("status_data_total")) == 1 << 30, boot
    assert int(boot.fact("status_data_used")) > 0, boot


def test_lvm_keeps_out_of_the_pool_sdctr_uses(boot: Boot) -> None:
    """LVM's metadata still says transaction 0 and no thin volume (so it activates the pool
    without checking the kernel's id), the kernel's id has moved on with sdctr's transactions,
    and lvcreate refuses to make a thin volume of its own there."""
    assert boot.fact("lvm_view") == "0|0", boot
    assert int(boot.fact("kernel_transaction_id")) > 0, boot
    assert boot.fact("lvm_thin_volume_status") != "0", boot


def test_rm_leaves_nothing_and_the_pool_comes_back_and_checks(boot: Boot) -> None:
    assert boot.fact("rm_status") == "0", boot
    assert (boot.fact("rm_devices"), boot.fact("rm_metadata")) == ("0", "0"), boot
    assert (boot.fact("down_status"), boot.fact("deactivated")) == ("0", "0"), boot
    # a pool LVM deactivated: the next run activates it
    assert (boot.fact("rerun_status"), boot.fact("rerun_out")) == ("0", "back-again"), boot
    assert (boot.fact("rerun_active"), boot.fact("rerun_devices")) == ("active", "0"), boot
    assert (boot.fact("second_down_status"), boot.fact("sdctr_devices_left")) == ("0", "0"), boot
    assert boot.fact("thin_check") == "0", boot


def test_a_pool_lvm_holds_thin_volumes_in_is_refused(boot: Boot) -> None:
    assert boot.fact("used_pool_status") == "125", boot
    assert boot.fact("used_pool_message") == "1", boot


def test_the_volume_group_goes_and_leaves_nothing(boot: Boot) -> None:
    assert boot.fact("vgremove_status") == "0", boot
    assert (boot.fact("dm_devices_left"), boot.fact("loops_left")) == ("0", "0"), boot
    # where the boot's time went (shown with pytest -rP)
    print({k: v for k, v in boot.facts.items() if k.startswith("seconds")})
