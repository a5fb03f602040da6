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
# Reports "FACT name=value" lines.
set -u
fact() { echo "FACT $1=$2"; }
ctr_devices() { dmsetup ls | grep -c -- '-ctr-' || true; }
wait_lines() { i=0; while [ "$(cat "$1" 2>/dev/null | wc -l)" -lt "$2" ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done; }
phase=$1

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
id=$(sdctr ps -aq --no-trunc | head -1)
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
fact rm_metadata "$(ls /var/lib/sdctr/devicemapper/metadata | grep -c '^ctr-' || true)"
python3 -m sdctr.storage.devicemapper down /var/lib/sdctr
fact second_down_status "$?"
thin_check /var/lib/sdctr/devicemapper/pool/metadata > /tmp/check 2>&1
fact thin_check "$?"
cat /tmp/check
umount /var/lib/sdctr
fact done yes
