#!/bin/sh
# Payload for test_thin_reboot.py: the thin pool across a reboot. /dev/vdb is a disk that keeps
# its writes between the two boots (tests/vm/vm --disk); /var/lib/sdctr lives on it, so the pool's
# loop files, its metadata and the records survive while the VM's own disk (/etc, /run) does not.
#
#   thin-reboot.sh first    the disk made; a kept container run that writes a file, then stopped;
#                           the pool taken down as sdctr-thinpool.service's ExecStop does at
#                           shutdown; the disk unmounted
#   thin-reboot.sh second   a fresh boot: no pool, no loop device, no unit; sdctr.yaml now says
#                           overlay (the host's setting changed). `sdctr cp` from the stopped
#                           container (diff refuses), then `sdctr start`, bring the pool back from
#                           its files and the container with its files; info and storage status
#                           show both drivers; rm leaves nothing; thin_check passes
#
# Both boots also carry a declared container (/etc/sdctr/containers/web.yaml, its unit the
# generator's) on the thin pool: made, restarted and stopped by systemctl in the first;
# in the second, after the rest, brought up as the boot brings it (the generator at daemon-reload,
# then multi-user.target, which wants it: sdctr is installed after the VM's boot, and the VM's
# own disk keeps nothing) with its files, then its file removed, `system gc`, nothing left.
#
# Reports "FACT name=value" lines.
set -u
fact() { echo "FACT $1=$2"; }
ctr_devices() { dmsetup ls | grep -c -- '-ctr-' || true; }
wait_lines() { i=0; while [ "$(cat "$1" 2>/dev/null | wc -l)" -lt "$2" ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done; }
phase=$1
GENERATORS=/usr/local/lib/systemd/system-generators
# the same bytes both boots: its record is kept while its file is unchanged (a stamp of its digest)
declare_web() {
  mkdir -p "$GENERATORS" /etc/sdctr/containers
  install -m755 /mnt/host/project/units/system-generators/sdctr-generator "$GENERATORS/"
  printf '%s\n' 'image: busybox' 'command: [sh, -c, "echo run >> /runs; exec sleep 1000"]' \
    'network: none' > /etc/sdctr/containers/web.yaml
  systemctl daemon-reload
}
wid=$(python3 -c 'from sdctr.systemd.generator import declared_id; print(declared_id("web"))')
wait_inactive() { i=0; while [ "$(systemctl is-active "$1")" != inactive ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; }
web_source() { findmnt -n -o SOURCE "/run/sdctr/$wid/rootfs" 2>/dev/null; }
web_journal() { journalctl -b --no-pager -n 30 -u ctr-web.service -u "sdctr-rootfs@$wid.service" -u sdctr-thinpool.service; }

mkdir -p /var/lib/sdctr /etc/sdctr
if [ "$phase" = first ]; then
  mkfs.ext4 -q -F /dev/vdb
fi
mount /dev/vdb /var/lib/sdctr || { fact mounted no; exit 1; }
fact mounted yes

if [ "$phase" = first ]; then
  printf 'storage:\n  driver: devicemapper\n  devicemapper:\n    data_size: 1G\n    metadata_size: 64M\n    base_size: 512M\n' \
    > /etc/sdctr/sdctr.yaml
  rm -rf /tmp/bb && sh "$SDCTR_TEST_HELPERS/busybox-rootfs.sh" /tmp/bb
  tar -C /tmp/bb -cf /tmp/bb.tar . && sdctr import /tmp/bb.tar busybox >/dev/null
  fact import_status "$?"
  id=$(sdctr run -d --network none --name keep busybox sh -c 'echo run >> /runs; exec sleep 1000' 2>/tmp/err)
  fact run_status "$?"
  head -20 /tmp/err
  wait_lines "/run/sdctr/$id/rootfs/runs" 1
  sdctr exec keep sh -c 'echo written-before-the-reboot > /kept-file'
  fact first_runs "$(wc -l < "/run/sdctr/$id/rootfs/runs")"
  fact first_storage "$(sdctr inspect -f '{{.Driver}}' keep 2>&1)"
  sdctr stop keep >/dev/null
  # the declared container: its unit the generator's, started and restarted by systemctl alone
  t0=$(date +%s)
  declare_web
  fact decl_requires_rootfs "$(systemctl show -P Requires ctr-web.service | grep -c "sdctr-rootfs@$wid.service")"
  systemctl start ctr-web.service
  fact decl_start_status "$?"
  wait_lines "/run/sdctr/$wid/rootfs/runs" 1
  [ -s "/run/sdctr/$wid/rootfs/runs" ] || web_journal
  fact decl_storage "$(sdctr inspect -f '{{.Driver}}' web 2>&1)"
  dev=$(web_source)
  fact decl_source "$(echo "$dev" | sed 's/.*-ctr-.*/a ctr device/')"
  sdctr exec web sh -c 'echo declared-before-the-reboot > /decl-file'
  systemctl restart ctr-web.service
  fact decl_restart_status "$?"
  wait_lines "/run/sdctr/$wid/rootfs/runs" 2
  fact decl_runs "$(wc -l < "/run/sdctr/$wid/rootfs/runs")"
  fact decl_restart_same_device "$([ -n "$dev" ] && [ "$(web_source)" = "$dev" ] && echo yes || echo no)"
  fact decl_restart_file "$(sdctr exec web cat /decl-file 2>&1)"
  systemctl stop ctr-web.service
  # `systemctl stop` returns with the container's job; its rootfs unit's stop (StopWhenUnneeded)
  # is a job of its own, queued then: how long it takes to hand the device back
  t=$(date +%s%N)
  wait_inactive "sdctr-rootfs@$wid.service"
  fact decl_stop_rootfs_ms "$(( ($(date +%s%N) - t) / 1000000 ))"
  fact decl_stop_rootfs_unit "$(systemctl is-active "sdctr-rootfs@$wid.service")"
  fact decl_stop_devices "$(ctr_devices)"
  fact decl_seconds_first "$(( $(date +%s) - t0 ))"
  fact stopped_devices "$(ctr_devices)"
  python3 -m sdctr.storage.devicemapper down /var/lib/sdctr
  fact down_status "$?"
  fact down_devices "$(dmsetup ls | grep -c sdctr- || true)"
  umount /var/lib/sdctr
  fact unmounted "$?"
  fact done yes
  exit 0
fi

# --- second boot ---------------------------------------------------------------------------------
printf 'storage:\n  driver: overlay\n' > /etc/sdctr/sdctr.yaml
fact boot_pool_devices "$(dmsetup ls | grep -c sdctr- || true)"
fact boot_loops "$(losetup -a | grep -c /var/lib/sdctr || true)"
fact boot_records "$(sdctr ps -aq | wc -l)"
id=$(sdctr inspect -f '{{.Id}}' keep)
# cp from the stopped container: its device activated for the copy and removed after (this also
# brings the pool up); diff refuses (it reads overlay's directories)
sdctr cp keep:/kept-file /tmp/cp-out 2>/tmp/err
fact cp_stopped_status "$?"
head -5 /tmp/err
fact cp_stopped "$(cat /tmp/cp-out 2>&1)"
fact cp_devices_after "$(ctr_devices)"
sdctr export -o /tmp/keep.tar keep 2>/tmp/err
fact export_status "$?"
head -5 /tmp/err
fact export_has_file "$(tar -tf /tmp/keep.tar | grep -c 'kept-file$')"
fact export_devices_after "$(ctr_devices)"
sdctr diff keep > /dev/null 2>/tmp/err
fact diff_status "$?"
fact diff_message_lines "$(grep -c . /tmp/err)"
sdctr start keep > /dev/null 2>/tmp/err
fact start_status "$?"
head -20 /tmp/err
wait_lines "/run/sdctr/$id/rootfs/runs" 2
fact second_runs "$(wc -l < "/run/sdctr/$id/rootfs/runs")"
fact kept_file "$(sdctr exec keep cat /kept-file 2>&1)"
fact second_source "$(findmnt -n -o SOURCE "/run/sdctr/$id/rootfs" | sed 's/.*-ctr-.*/a ctr device/')"
fact second_devices "$(ctr_devices)"
sdctr info > /tmp/info 2>&1
cat /tmp/info
fact info_driver "$(sed -n 's/^ Storage Driver: //p' /tmp/info)"
fact info_in_use "$(sed -n 's/^ Storage Driver (in use): //p' /tmp/info)"
fact info_by_driver "$(sed -n 's/^  Containers By Driver: //p' /tmp/info)"
fact info_data_used "$(grep -c '^  Data Space Used: ' /tmp/info)"
sdctr storage status --format json > /tmp/status.json
python3 -c 'import json; d = json.load(open("/tmp/status.json")); s = dict(d["OtherDriverStatus"]["devicemapper"]); print("FACT status_data_total=%d" % s["Data Space Total"]); print("FACT status_metadata_total=%d" % s["Metadata Space Total"])'
new=$(sdctr run --rm --network none busybox sh -c 'awk "\$5 == \"/\" { print \$(NF-2) }" /proc/self/mountinfo' 2>&1 | tail -1)
fact new_container_fstype "$new"
sdctr rm -f keep >/dev/null
fact rm_devices "$(ctr_devices)"
fact rm_metadata "$(ls /var/lib/sdctr/devicemapper/metadata | grep '^ctr-' | grep -vc "$wid" || true)"
fact decl_kept_metadata "$(ls /var/lib/sdctr/devicemapper/metadata | grep -c "^ctr-$wid" || true)"
python3 -m sdctr.storage.devicemapper down /var/lib/sdctr
fact second_down_status "$?"
thin_check /var/lib/sdctr/devicemapper/pool/metadata > /tmp/check 2>&1
fact thin_check "$?"
cat /tmp/check

# the declared container, as at boot: its file there before the generator runs, then the boot's
# target, which wants its unit; the pool down (as after a reboot) and the setting still overlay:
# its record says devicemapper, so its unit has the rootfs unit
t0=$(date +%s)
fact decl_boot_pool_devices "$(dmsetup ls | grep -c sdctr- || true)"
declare_web
fact decl_boot_wanted "$(systemctl show -P WantedBy ctr-web.service | grep -c multi-user.target)"
systemctl start multi-user.target
i=0; while [ "$(systemctl is-active ctr-web.service)" != active ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
fact decl_boot_active "$(systemctl is-active ctr-web.service)"
wait_lines "/run/sdctr/$wid/rootfs/runs" 3
[ -s "/run/sdctr/$wid/rootfs/runs" ] || web_journal
fact decl_boot_runs "$(wc -l < "/run/sdctr/$wid/rootfs/runs" 2>&1)"
fact decl_boot_file "$(sdctr exec web cat /decl-file 2>&1)"
fact decl_boot_source "$(web_source | sed 's/.*-ctr-.*/a ctr device/')"
fact decl_boot_pool_unit "$(systemctl is-active sdctr-thinpool.service)"
pool_up=$(systemctl show -P ActiveEnterTimestampMonotonic sdctr-thinpool.service)
rootfs_start=$(systemctl show -P InactiveExitTimestampMonotonic "sdctr-rootfs@$wid.service")
fact decl_pool_before_rootfs "$([ "${pool_up:-0}" -gt 0 ] && [ "$pool_up" -le "${rootfs_start:-0}" ] && echo yes || echo no)"
# removed: its file, then (stopped) `system gc`
rm /etc/sdctr/containers/web.yaml
systemctl daemon-reload
systemctl stop ctr-web.service
sdctr system gc > /tmp/gc 2>&1  # (waits for its rootfs unit's stop, as `sdctr stop` and `rm` do)
fact decl_gc "$(grep -c 'declared container web' /tmp/gc)"
cat /tmp/gc
fact decl_gone_records "$(sdctr ps -aq | wc -l)"
fact decl_gone_devices "$(dmsetup ls | grep -c -- '-ctr-' || true)"
fact decl_gone_metadata "$(ls /var/lib/sdctr/devicemapper/metadata | grep -c '^ctr-' || true)"
fact decl_gone_rootfs_unit "$(systemctl is-active "sdctr-rootfs@$wid.service")"
systemctl stop sdctr-thinpool.service
python3 -m sdctr.storage.devicemapper down /var/lib/sdctr
thin_check /var/lib/sdctr/devicemapper/pool/metadata > /tmp/check 2>&1
fact decl_thin_check "$?"
cat /tmp/check
fact decl_seconds_second "$(( $(date +%s) - t0 ))"
umount /var/lib/sdctr
fact done yes
