#!/bin/sh
# Payload for test_thin_run.py: `sdctr run` over the devicemapper driver on a real thin pool (a
# small one: 512 MiB of data, so filling it is quick), one boot per cgroup version. Reports
# "FACT name=value" lines:
#
#   1. `sdctr run --rm` prints from busybox; afterwards no device, mount or record is left, and
#      once the pool's lock is free (its deletion runs after the run returns) no unit or metadata;
#   2. a kept container: its unit's device cgroup stays closed (no device-mapper in it) while the
#      root file system's own unit is active; stop leaves no device and no mount; start and
#      `systemctl restart` bring the same snapshot back; rm leaves nothing;
#   3. the attack: root in a container makes nodes for /dev/mapper/control, the pool and its own
#      thin device and opens them;
#   4. a pool filled past its free-space floor refuses the next container with a message that
#      says how to grow it, and leaks nothing; after the filler is removed, containers run again;
#   5. times: `sdctr run --rm busybox true` over devicemapper and over overlay, three each.
set -u
fact() { echo "FACT $1=$2"; }
ms() { date +%s%3N; }
ctr_devices() { dmsetup ls | grep -c -- '-ctr-' || true; }
sdctr_mounts() { grep -c ' /run/sdctr/' /proc/self/mountinfo || true; }
units_left() { systemctl list-units --all --no-legend --plain 'sdctr-rootfs@*' 'ctr-*' | wc -l; }
# until FILE (inside a container's root) has N lines, 20 s at most
wait_lines() { i=0; while [ "$(cat "$1" 2>/dev/null | wc -l)" -lt "$2" ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done; }

mkdir -p /etc/sdctr
cat > /etc/sdctr/sdctr.yaml <<'EOF'
storage:
  driver: devicemapper
  devicemapper:
    data_size: 512M
    metadata_size: 64M
    base_size: 1G
EOF
printf 'storage:\n  driver: overlay\n' > /etc/sdctr/overlay.yaml

rm -rf /tmp/bb && sh "$SDCTR_TEST_HELPERS/busybox-rootfs.sh" /tmp/bb
tar -C /tmp/bb -cf /tmp/bb.tar . && sdctr import /tmp/bb.tar busybox >/dev/null
fact import_status "$?"

# --- 1 ------------------------------------------------------------------------------------------
out=$(sdctr run --rm busybox echo hello-from-thin 2>/tmp/err); rc=$?
fact run_rm_status "$rc"
fact run_rm_output "$out"
head -20 /tmp/err
# what the run's return promises: no device active, nothing mounted, no record
fact run_rm_devices_after "$(ctr_devices)"
fact run_rm_mounts_after "$(sdctr_mounts)"
fact run_rm_records_after "$(sdctr ps -aq | wc -l)"
# the device deleted from the pool by the rootfs unit's script (sdctr/rootfs.sh) after the run
# returned (as Docker's deferred deletion), under the pool's lock: done once the lock is free;
# its transaction closed at the pool's own id, and the unit gone (10 s at most)
flock /var/lib/sdctr/devicemapper/lock true
i=0; while [ "$(units_left)" != 0 ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done
fact run_rm_units_after "$(units_left)"
fact run_rm_metadata_after "$(ls /var/lib/sdctr/devicemapper/metadata | grep -c '^ctr-' || true)"
pool_tid=$(dmsetup status "$(dmsetup ls | awk '/-pool\t|-pool /{print $1}' | head -1)" | awk '{print $4}')
fact run_rm_transaction "$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["open"], r["transaction_id"] == int(sys.argv[2]))' /var/lib/sdctr/devicemapper/transaction.json "$pool_tid")"
root_source=$(sdctr run --rm busybox awk '$5 == "/" { print $(NF-1) }' /proc/self/mountinfo 2>&1 | tail -1)
fact run_root_source "$root_source"

# --- 2 ------------------------------------------------------------------------------------------
id=$(sdctr run -d --name keep busybox sh -c 'echo run >> /runs; exec sleep 1000' 2>/tmp/err)
fact keep_status "$?"
head -20 /tmp/err
rootfs=/run/sdctr/$id/rootfs
unit=ctr-$(echo "$id" | cut -c1-12).service
wait_lines "$rootfs/runs" 1
fact keep_policy "$(systemctl show -p DevicePolicy --value "$unit")"
fact keep_allow "$(systemctl show -p DeviceAllow --value "$unit" | paste -sd ',')"
fact keep_rootfs_unit "$(systemctl is-active "sdctr-rootfs@$id.service")"
fact keep_source "$(findmnt -n -o SOURCE "$rootfs" | sed 's/.*-ctr-.*/a ctr device/')"

# --- 3 (while `keep` runs) ------------------------------------------------------------------------
pool=$(dmsetup ls | awk '/-pool\t|-pool /{print $1}' | head -1)
own=$(dmsetup ls | awk '/-ctr-/{print $1}' | head -1)
node() { dmsetup info -c --noheadings -o major,minor "$1" | tr ':' ' '; }
control="$(stat -c '%Hr %Lr' /dev/mapper/control)"
fact host_opens_control "$(sh -c 'exec 3<>/dev/mapper/control && echo opened' 2>&1)"
attack=$(sdctr run --rm busybox sh -c "
  mknod /c c $control; mknod /p b $(node "$pool"); mknod /o b $(node "$own")
  (exec 3<>/c && echo control-OPENED) 2>&1 | tail -1
  (head -c 1 /p >/dev/null && echo pool-OPENED) 2>&1 | tail -1
  (head -c 1 /o >/dev/null && echo own-OPENED) 2>&1 | tail -1" 2>&1)
echo "$attack"
fact attack_control "$(echo "$attack" | sed -n 1p)"
fact attack_pool "$(echo "$attack" | sed -n 2p)"
fact attack_own_device "$(echo "$attack" | sed -n 3p)"

sdctr stop keep >/dev/null
fact stop_devices "$(ctr_devices)"
fact stop_mounts "$(sdctr_mounts)"
fact stop_rootfs_unit "$(systemctl is-active "sdctr-rootfs@$id.service")"
sdctr start keep >/dev/null
wait_lines "$rootfs/runs" 2
fact start_runs "$(wc -l < "$rootfs/runs")"
systemctl restart "$unit"
wait_lines "$rootfs/runs" 3
fact restart_runs "$(wc -l < "$rootfs/runs")"
fact restart_devices "$(ctr_devices)"
sdctr rm -f keep >/dev/null
fact rm_devices "$(ctr_devices)"
fact rm_mounts "$(sdctr_mounts)"
fact rm_metadata "$(ls /var/lib/sdctr/devicemapper/metadata | grep -c '^ctr-' || true)"
fact rm_units "$(units_left)"

# --- 4 ------------------------------------------------------------------------------------------
# data blocks used/total (64 KiB each): fill the pool to 95 %, past the 10 % floor
usage=$(dmsetup status "$pool" | awk '{print $6}')
used=${usage%/*} total=${usage#*/}
fill_mb=$(( (total * 95 / 100 - used) / 16 ))
fact fill_mb "$fill_mb"
filler=$(sdctr run -d busybox sh -c "dd if=/dev/zero of=/fill bs=1M count=$fill_mb 2>/dev/null; sync; echo filled > /done; exec sleep 1000")
wait_lines "/run/sdctr/$filler/rootfs/done" 1
fact filled "$(cat "/run/sdctr/$filler/rootfs/done" 2>/dev/null)"
dmsetup status "$pool"
sdctr run --rm busybox echo should-not-run > /tmp/out 2>/tmp/err
fact full_status "$?"
cat /tmp/out /tmp/err
fact full_message "$(head -1 /tmp/err)"
fact full_hint_grow "$(grep -c -i 'grow' /tmp/err || true)"
fact full_devices "$(ctr_devices)"
fact full_records "$(sdctr ps -aq | wc -l)"
fact full_units "$(units_left)"
fact full_pool_mode "$(dmsetup status "$pool" | awk '{print $8}')"
sdctr rm -f "$filler" >/dev/null
fact after_full_output "$(sdctr run --rm busybox echo after-full 2>&1)"

# --- 5 ------------------------------------------------------------------------------------------
run_times() {
  for i in 1 2 3; do
    t=$(ms)
    if sdctr run --rm busybox true >/dev/null 2>&1; then echo $(( $(ms) - t )); else echo failed; fi
  done | paste -sd' '
}
fact thin_run_ms "$(run_times)"
fact overlay_run_ms "$(SDCTR_CONFIG=/etc/sdctr/overlay.yaml run_times)"
fact final_devices "$(ctr_devices)"
fact final_mounts "$(sdctr_mounts)"
fact done yes
