#!/bin/sh
# Payload for test_thin_lvm.py: the devicemapper driver over an LVM thin pool that
# `sdctr storage setup --lvm VG` makes, on a fresh volume group over a loop device. Reports
# "FACT name=value" lines:
#
#   1. setup's refusals: a volume group that does not exist, a size the group cannot hold (125,
#      nothing made);
#   2. setup: the pool made (lvs: a thin pool, 512 KiB chunks, no zeroing), sdctr.yaml written
#      with the other settings and the comments kept; a second setup takes the pool as it is;
#   3. two kept containers on it, each seeing only its own file; their devices are thin devices
#      of the LVM pool (dmsetup), no loop file is made; info shows the pool's origin and use;
#   4. LVM and sdctr side by side: LVM's own view of the pool is unchanged (transaction id 0, no
#      thin volume of its own) while the kernel's moved on, and lvcreate refuses a thin volume in it;
#   5. rm leaves no device and no metadata; a pool deactivated by LVM is activated again by the
#      next `sdctr run`; thin_check passes on the pool's metadata (its _tmeta, pool inactive);
#   6. a pool LVM holds thin volumes in is refused with a clear message;
#   7. the volume group removed: no device-mapper device, no loop device left.
set -u
fact() { echo "FACT $1=$2"; }
ctr_devices() { dmsetup ls | grep -c -- '-ctr-' || true; }
wait_lines() { i=0; while [ "$(cat "$1" 2>/dev/null | wc -l)" -lt "$2" ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done; }
start=$(date +%s) part_start=$(date +%s)
# FACT seconds_<part>: where the boot's time goes (pytest -rP shows them)
part() { now=$(date +%s); fact "seconds_$1" $((now - part_start)); part_start=$now; }
VG=sdctrvg

truncate -s 3G /var/tmp/pv.img
loop=$(losetup -f --show /var/tmp/pv.img)
pvcreate -q -y "$loop" && vgcreate -q "$VG" "$loop"
fact vg_status "$?"

# --- 1 ------------------------------------------------------------------------------------------
mkdir -p /etc/sdctr
printf '# the host'"'"'s own notes\nnetwork:\n  bridge: sdctr9\n' > /etc/sdctr/sdctr.yaml
sdctr storage setup --lvm novg > /tmp/out 2>&1
fact novg_status "$?"
cat /tmp/out
fact novg_message "$(grep -c 'volume group novg does not exist' /tmp/out)"
sdctr storage setup --lvm "$VG" --size 100G > /tmp/out 2>&1
fact toobig_status "$?"
cat /tmp/out
fact toobig_message "$(grep -c "volume group $VG has .* free" /tmp/out)"
fact toobig_lvs "$(lvs --noheadings "$VG" | wc -l)"

part refusals
# --- 2 ------------------------------------------------------------------------------------------
sdctr storage setup --lvm "$VG" --size 1G > /tmp/out 2>&1
fact setup_status "$?"
cat /tmp/out
fact setup_made_line "$(grep -c "^made LVM thin pool $VG/sdctr-pool" /tmp/out)"
lvs --noheadings --binary --separator '|' -o segtype,chunk_size,zero,lv_size --units m "$VG/sdctr-pool" > /tmp/lvs
cat /tmp/lvs
fact lvs_pool "$(tr -d ' ' < /tmp/lvs)"
cat /etc/sdctr/sdctr.yaml
fact config_thinpool "$(python3 -c 'from sdctr import config; print(config.load().storage.devicemapper.thinpool)')"
fact config_driver "$(python3 -c 'from sdctr import config; print(config.load().storage.driver)')"
fact config_bridge "$(python3 -c 'from sdctr import config; print(config.load().network.bridge)')"
fact config_comment "$(grep -c "^# the host's own notes" /etc/sdctr/sdctr.yaml)"
sdctr storage setup --lvm "$VG" --size 1G > /tmp/out 2>&1
fact again_status "$?"
cat /tmp/out
fact again_line "$(grep -c 'is there already' /tmp/out)"

part setup
# --- 3 ------------------------------------------------------------------------------------------
rm -rf /tmp/bb && sh "$SDCTR_TEST_HELPERS/busybox-rootfs.sh" /tmp/bb
tar -C /tmp/bb -cf /tmp/bb.tar . && sdctr import /tmp/bb.tar busybox >/dev/null
fact import_status "$?"
a=$(sdctr run -d --network none --name a busybox sh -c 'echo a > /mine; exec sleep 1000' 2>/tmp/err)
fact run_a_status "$?"
head -20 /tmp/err
b=$(sdctr run -d --network none --name b busybox sh -c 'echo b > /mine; exec sleep 1000' 2>/tmp/err)
fact run_b_status "$?"
head -20 /tmp/err
wait_lines "/run/sdctr/$a/rootfs/mine" 1
wait_lines "/run/sdctr/$b/rootfs/mine" 1
fact a_sees "$(sdctr exec a cat /mine 2>&1)"
fact b_sees "$(sdctr exec b cat /mine 2>&1)"
dmsetup ls
fact ctr_devices "$(ctr_devices)"
pool_dev=$(dmsetup info -c --noheadings -o major,minor "$VG-sdctr--pool" | tr -d ' ')
on_pool=0
for d in $(dmsetup ls | cut -f1 | grep -- '-ctr-'); do
    set -- $(dmsetup table "$d")
    [ "$3 $4" = "thin $pool_dev" ] && on_pool=$((on_pool + 1))
done
fact ctr_devices_on_the_lvm_pool "$on_pool"
fact loop_files "$(find /var/lib/sdctr/devicemapper/pool -type f | wc -l)"
fact sdctr_loops "$(losetup -a | grep -c /var/lib/sdctr || true)"
sdctr info > /tmp/info 2>&1
cat /tmp/info
fact info_origin "$(sed -n 's/^  Pool Origin: //p' /tmp/info)"
fact info_pool_name "$(sed -n 's/^  Pool Name: //p' /tmp/info)"
fact info_blocksize "$(sed -n 's/^  Pool Blocksize: //p' /tmp/info)"
sdctr storage status --format json > /tmp/status.json
python3 -c 'import json; s = dict(json.load(open("/tmp/status.json"))["DriverStatus"]); print("FACT status_data_total=%d" % s["Data Space Total"]); print("FACT status_data_used=%d" % s["Data Space Used"])'

part containers
# --- 4 ------------------------------------------------------------------------------------------
lvs --noheadings --separator '|' -o transaction_id,thin_count "$VG/sdctr-pool" > /tmp/lvs
fact lvm_view "$(tr -d ' ' < /tmp/lvs)"
set -- $(dmsetup status "$VG-sdctr--pool")
fact kernel_transaction_id "$4"
lvcreate -q -y -V 16M -T "$VG/sdctr-pool" -n intruder > /tmp/out 2>&1
fact lvm_thin_volume_status "$?"
cat /tmp/out

part lvm_side
# --- 5 ------------------------------------------------------------------------------------------
sdctr rm -f a b > /dev/null 2>/tmp/err
fact rm_status "$?"
head -5 /tmp/err
fact rm_devices "$(ctr_devices)"
fact rm_metadata "$(ls /var/lib/sdctr/devicemapper/metadata | grep -c '^ctr-' || true)"
python3 -m sdctr.storage.devicemapper down /var/lib/sdctr
fact down_status "$?"
lvchange -an "$VG/sdctr-pool"
fact deactivated "$(dmsetup ls | grep -c "^$VG-sdctr--pool\s" || true)"
out=$(sdctr run --rm --network none busybox echo back-again 2>/tmp/err)
fact rerun_status "$?"
head -20 /tmp/err
fact rerun_out "$out"
fact rerun_active "$(lvs --noheadings -o lv_active "$VG/sdctr-pool" | tr -d ' ')"
fact rerun_devices "$(ctr_devices)"
python3 -m sdctr.storage.devicemapper down /var/lib/sdctr
fact second_down_status "$?"
fact sdctr_devices_left "$(dmsetup ls | grep -c '^sdctr-' || true)"
lvchange -an "$VG/sdctr-pool" && lvchange -q -ay -y "$VG/sdctr-pool_tmeta"
thin_check "/dev/mapper/$VG-sdctr--pool_tmeta" > /tmp/check 2>&1
fact thin_check "$?"
cat /tmp/check
lvchange -an "$VG/sdctr-pool_tmeta"

part rm_rerun_check
# --- 6 ------------------------------------------------------------------------------------------
lvcreate -q -y --type thin-pool -L 64M -n lvmpool "$VG" && lvcreate -q -y -V 16M -T "$VG/lvmpool" -n lvmthin
printf 'storage:\n  driver: devicemapper\n  devicemapper:\n    thinpool: %s/lvmpool\n' "$VG" > /tmp/used.yaml
SDCTR_CONFIG=/tmp/used.yaml sdctr run --rm --network none busybox true > /tmp/out 2>&1
fact used_pool_status "$?"
cat /tmp/out
fact used_pool_message "$(grep -c "LVM thin pool $VG/lvmpool is LVM's own" /tmp/out)"

part lvm_used_pool
# --- 7 ------------------------------------------------------------------------------------------
vgremove -q -ff "$VG" > /tmp/out 2>&1
fact vgremove_status "$?"
cat /tmp/out
pvremove -q "$loop" && losetup -d "$loop"
rm -f /var/tmp/pv.img
dmsetup ls
fact dm_devices_left "$(dmsetup ls | grep -c -e '^sdctr' -e "^$VG" || true)"
fact loops_left "$(losetup -a | grep -c pv.img || true)"
part vgremove
fact seconds "$(( $(date +%s) - start ))"
fact done yes
