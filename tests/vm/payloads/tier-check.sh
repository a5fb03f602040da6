#!/bin/sh
# Payload for test_vm_tier.py, run inside the VM by `tests/vm/vm run`: one boot checks everything
# the tier promises and reports each finding as a "FACT name=value" line for the test to assert
# on; the commands' own output in between is there for the person reading a failure.
#
#   usage: tier-check.sh EXIT_STATUS      (exits with it, to prove the status passes through)
set -u

fact() { echo "FACT $1=$2"; }

cgroup_facts() {
  fact cgroup_fstype "$(findmnt -n -o FSTYPE /sys/fs/cgroup)"
  fact cgroup_v1_hierarchies "$(findmnt -n -t cgroup -o TARGET | sed 's|.*/||' | sort | paste -sd ' ')"
  fact cgroup2_mounts "$(findmnt -n -t cgroup2 -o TARGET | paste -sd ' ')"
}

# A thin pool on loop files, a thin device with a file system, a snapshot of it: the data reads
# back through the snapshot, and a write to the snapshot leaves the origin as it was.
thin_snapshot_check() (
  set -ex
  mkdir -p /var/lib/tier && cd /var/lib/tier
  truncate -s 2G data; truncate -s 128M meta
  data=$(losetup -f --show data); meta=$(losetup -f --show meta)
  dd if=/dev/zero of="$meta" bs=4096 count=1  # a zeroed superblock: the pool formats its metadata
  dmsetup create tier-pool --table "0 $((2 * 1024 * 1024 * 1024 / 512)) thin-pool $meta $data 128 32768 1 skip_block_zeroing"
  dmsetup message /dev/mapper/tier-pool 0 "create_thin 0"
  dmsetup create tier-base --table "0 $((512 * 1024 * 1024 / 512)) thin /dev/mapper/tier-pool 0"
  mkfs.ext4 -q -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 /dev/mapper/tier-base
  mkdir -p /mnt/tier
  mount /dev/mapper/tier-base /mnt/tier && echo "origin-data" > /mnt/tier/f && umount /mnt/tier
  # The origin must not change while the pool copies its mapping: suspend it around create_snap.
  dmsetup suspend tier-base
  dmsetup message /dev/mapper/tier-pool 0 "create_snap 1 0"
  dmsetup resume tier-base
  dmsetup create tier-snap --table "0 $((512 * 1024 * 1024 / 512)) thin /dev/mapper/tier-pool 1"
  mount /dev/mapper/tier-snap /mnt/tier
  set +x
  fact thin_snapshot_reads "$(cat /mnt/tier/f)"
  echo "snapshot-data" > /mnt/tier/f
  umount /mnt/tier
  mount /dev/mapper/tier-base /mnt/tier
  fact thin_origin_after_snapshot_write "$(cat /mnt/tier/f)"
  umount /mnt/tier
  dmsetup status tier-pool
)

# A transient unit whose memory limit (the v1 or the v2 spelling) is below what it allocates.
memory_limit_check() {
  if [ "$(findmnt -n -o FSTYPE /sys/fs/cgroup)" = cgroup2 ]; then limit=MemoryMax; else limit=MemoryLimit; fi
  fact oom_limit_property "$limit"
  systemd-run --wait --unit=tier-oom -p "$limit=30M" \
    python3 -c 'x = b"x" * (100 * 1024 * 1024); print("survived")'
  fact oom_run_status "$?"
  systemctl status --no-pager tier-oom.service
  fact oom_limit_value "$(systemctl show -p "$limit" --value tier-oom.service)"
  fact oom_result "$(systemctl show -p Result --value tier-oom.service)"
  fact oom_main_exit "$(systemctl show -p ExecMainCode,ExecMainStatus tier-oom.service | paste -sd ' ')"
  # The kernel names the memory cgroup whose limit it enforced: it must be the unit's own.
  fact oom_memcg "$(dmesg | sed -n 's/.*oom_memcg=\([^,]*\),.*/\1/p' | tail -1)"
}

# sdctr itself: a container's -c/-m/--cpus/--pids-limit land in the kernel's files for its unit
# under either cgroup version (CPUShares/MemoryLimit on v1, CPUWeight/MemoryMax on v2), and a
# container allocating past -m is OOM-killed: exit 137, OOMKilled.
sdctr_run_check() {
  rm -rf /tmp/bb && sh "$SDCTR_TEST_HELPERS/busybox-rootfs.sh" /tmp/bb
  tar -C /tmp/bb -cf /tmp/bb.tar . && sdctr import /tmp/bb.tar busybox
  cid=$(sdctr run -d -c 512 -m 64m --cpus 0.5 --pids-limit 64 busybox sleep 1000)
  unit="ctr-$(echo "$cid" | cut -c1-12).service"
  systemctl status --no-pager "$unit"
  if [ "$(findmnt -n -o FSTYPE /sys/fs/cgroup)" = cgroup2 ]; then
    d=/sys/fs/cgroup/sdctr.slice/$unit
    fact run_memory "$(cat $d/memory.max)"
    fact run_cpu "$(cat $d/cpu.weight)"
    fact run_cpu_max "$(cat $d/cpu.max)"
    fact run_pids "$(cat $d/pids.max)"
  else
    fact run_memory "$(cat /sys/fs/cgroup/memory/sdctr.slice/$unit/memory.limit_in_bytes)"
    fact run_cpu "$(cat /sys/fs/cgroup/cpu,cpuacct/sdctr.slice/$unit/cpu.shares)"
    fact run_cpu_max "$(cat /sys/fs/cgroup/cpu,cpuacct/sdctr.slice/$unit/cpu.cfs_quota_us)"
    fact run_pids "$(cat /sys/fs/cgroup/pids/sdctr.slice/$unit/pids.max)"
  fi
  sdctr rm -f "$cid"
  sdctr run --rm -m 32m busybox dd if=/dev/zero of=/dev/null bs=100M count=1
  fact run_oom_status "$?"
  oom=$(sdctr run -d -m 32m busybox dd if=/dev/zero of=/dev/null bs=100M count=1)
  fact run_oom_wait "$(sdctr wait "$oom")"
  fact run_oom_killed "$(sdctr inspect -f '{{.State.OOMKilled}}' "$oom")"
  sdctr rm "$oom"
}

# Issue 10's attack: root in a container makes a node for the VM's own disk and reads it. The
# device cgroup refuses the read (v1: the devices controller; v2: systemd's BPF program), for a
# node the container made and for one its image shipped (0666); --device opens its node alone.
# Each read reports "read", or head's error.
read_of() { echo "if head -c 16 $1 >/dev/null 2>/tmp/e; then echo read; else sed 's/^head: //' /tmp/e; fi"; }

device_check() {
  disk=$(findmnt -n -o SOURCE /)
  majmin=$(cat "/sys/class/block/$(basename "$disk")/dev")
  major=${majmin%:*} minor=${majmin#*:}
  fact disk_node "$disk $majmin"
  fact disk_read_on_host "$(sh -c "$(read_of "$disk")")"  # the probe reads what root may read
  fact disk_read_mknod "$(sdctr run --rm busybox sh -c "mknod /tmp/d b $major $minor && $(read_of /tmp/d)")"
  rm -rf /tmp/bb-node && cp -a /tmp/bb /tmp/bb-node
  mknod /tmp/bb-node/disk b "$major" "$minor" && chmod 666 /tmp/bb-node/disk
  tar -C /tmp/bb-node -cf /tmp/bb-node.tar . && sdctr import /tmp/bb-node.tar busybox-node
  fact disk_read_image_node "$(sdctr run --rm busybox-node sh -c "ls -l /disk >&2; $(read_of /disk)")"
  printf 'LOOP-MARKER-VM' > /tmp/loop-file && truncate -s 1M /tmp/loop-file
  loop=$(losetup --find --show /tmp/loop-file)
  fact device_read "$(sdctr run --rm --device "$loop:/dev/xvdb" busybox sh -c \
    "head -c 14 /dev/xvdb; echo; mknod /tmp/d b $major $minor && $(read_of /tmp/d)" | paste -sd ' ')"
  fact privileged_read "$(sdctr run --rm --privileged busybox sh -c \
    "mknod /tmp/d b $major $minor && $(read_of /tmp/d)")"
  losetup -d "$loop"
}

# Issue 11: a published port under either cgroup version, through the nftables table: busybox
# httpd in a container published with -p 8080:80 answers through 127.0.0.1:8080 (the DNAT in
# OUTPUT, route_localnet, the masquerade), the table holds one map element carried by the
# container's id, and rm -f leaves none. The VM has no network: the bridge is its own.
get() {
  python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())' "$1"
}
elements_of() {  # the sdctr table's map elements commented with $1
  nft -j list table ip sdctr | python3 -c 'import json, sys
maps = [i["map"] for i in json.load(sys.stdin)["nftables"] if "map" in i]
keys = [e[0] if isinstance(e, list) else e for m in maps for e in m.get("elem", [])]
print(sum(1 for k in keys if isinstance(k, dict) and k.get("elem", {}).get("comment") == sys.argv[1]))' "$1"
}
port_check() {
  mkdir -p /tmp/www && echo vm-page > /tmp/www/index.html
  cid=$(sdctr run -d -p 8080:80 -v /tmp/www:/www busybox httpd -f -p 80 -h /www)
  page=
  for _ in $(seq 50); do page=$(get http://127.0.0.1:8080/ 2>/dev/null) && break; sleep 0.2; done
  fact port_page "$page"
  nft list table ip sdctr
  fact port_elements "$(elements_of "$cid")"
  sdctr rm -f "$cid"
  fact port_elements_after_rm "$(elements_of "$cid")"
}

fact kernel "$(uname -r)"
fact systemd "$(systemctl --version | head -1)"
fact system_state "$(systemctl is-system-running --wait)"
cgroup_facts
dmsetup targets
fact thin_pool_target "$(dmsetup targets | awk '$1 == "thin-pool" { print "listed" }')"
fact sdctr_version "$(sdctr --version 2>&1)"
thin_snapshot_check 2>&1
memory_limit_check 2>&1
sdctr_run_check 2>&1
device_check 2>&1
port_check 2>&1
fact done yes
exit "${1:-0}"
