#!/bin/sh
# Payload for test_thin.py, run inside the VM (dm-thin loaded) from the bundle test_thin.py makes:
# this checkout's tests/ and pyproject.toml unpacked in $1; the rest of the arguments, the steps
# at which part 3 kills sdctr (create:opened ... delete:committed; none: all ten). Reports
# "FACT name=value" lines, and "FACT seconds_<part>=N" for where the time went:
#
#   1. the conformance suite (tests/host/test_snapshotters.py) over the devicemapper driver;
#   2. end to end: `sdctr import`, `sdctr run -d` twice, each writes its own file and sees only
#      its own; the devices the pool holds (thin_ls) and the active ones (dmsetup ls) are exactly
#      those sdctr's metadata names;
#   3. fault injection: sdctr killed (SIGKILL) at each step given of create and delete; afterwards
#      thin_check passes on the pool's metadata, sdctr works and no device is leaked or lost.
set -u
tests=$1
shift
steps=${*:-create:opened create:messaged create:saved create:before-commit create:committed \
delete:marked delete:opened delete:messaged delete:before-commit delete:committed}
fact() { echo "FACT $1=$2"; }
t0=$(date +%s)
took() { fact "seconds_$1" "$(( $(date +%s) - t0 ))"; t0=$(date +%s); }
root=/var/lib/sdctr
dm=$root/devicemapper

# --- 1 ------------------------------------------------------------------------------------------
cd "$tests"
SDCTR_TESTS_STRICT=1 python3 -m pytest -p no:cacheprovider tests/host/test_snapshotters.py -m host \
  -k devicemapper -q -rs > /tmp/conformance 2>&1
fact conformance_status "$?"
tail -60 /tmp/conformance
fact leftover_devices "$(dmsetup ls | grep -c '^sdctr-' || true)"
fact leftover_loops "$(losetup -n -l | grep -c /tmp/ || true)"
took conformance
cd /root

# --- 2 ------------------------------------------------------------------------------------------
fact auto_driver "$(python3 -c 'from sdctr.thinhost import chosen_driver; print(chosen_driver("/var/lib/sdctr")[0])')"
rm -rf /tmp/bb && sh "$SDCTR_TEST_HELPERS/busybox-rootfs.sh" /tmp/bb
echo "from the image" > /tmp/bb/etc/motd
tar -C /tmp/bb -cf /tmp/bb.tar . && sdctr import /tmp/bb.tar busybox

# what the pool holds, what is active and what the metadata says, compared; prints a verdict
consistency() {
  python3 - "$dm" <<'EOF'
import glob, json, os, subprocess, sys
dm = sys.argv[1]
devs = [json.load(open(p)) for p in glob.glob(f"{dm}/metadata/*.json")]
st = os.stat(dm)
prefix = f"sdctr-{os.major(st.st_dev)}:{os.minor(st.st_dev)}-{st.st_ino}"
pool = f"{prefix}-pool"
active = sorted(l.split()[0][len(prefix) + 1:] for l in subprocess.run(
    ["dmsetup", "ls"], capture_output=True, text=True).stdout.splitlines()
    if l.startswith(prefix + "-") and not l.startswith(pool))
meta_loop = subprocess.run(["losetup", "-j", f"{dm}/pool/metadata"], capture_output=True,
                           text=True).stdout.split(":")[0]
subprocess.run(["dmsetup", "message", pool, "0", "reserve_metadata_snap"], check=True)
try:
    out = subprocess.run(["thin_ls", "--metadata-snap", "-o", "DEV", "--no-headers", meta_loop],
                         capture_output=True, text=True, check=True).stdout
finally:
    subprocess.run(["dmsetup", "message", pool, "0", "release_metadata_snap"], check=True)
in_pool = sorted(int(x) for x in out.split())
in_meta = sorted(d["device_id"] for d in devs)
known = {d["name"] for d in devs}
tid = json.load(open(f"{dm}/transaction.json"))
pool_tid = int(subprocess.run(["dmsetup", "status", pool], capture_output=True, text=True).stdout.split()[3])
ok = in_pool == in_meta and set(active) <= known and tid["open"] is None and tid["transaction_id"] == pool_tid
print(f"pool={in_pool} metadata={in_meta} active={active} transaction={tid} pool_transaction={pool_tid}")
print("VERDICT", "consistent" if ok else "INCONSISTENT")
EOF
}

a=$(sdctr run -d busybox sh -c 'echo a > /a-file; sleep 1000')
b=$(sdctr run -d busybox sh -c 'echo b > /b-file; sleep 1000')
sleep 2
ra=/run/sdctr/$a/rootfs rb=/run/sdctr/$b/rootfs
fact e2e_a_sees "$(ls "$ra" | grep -- '-file' | paste -sd' ')"
fact e2e_b_sees "$(ls "$rb" | grep -- '-file' | paste -sd' ')"
fact e2e_motd "$(cat "$ra/etc/motd")"
fact e2e_storage "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["storage"])' \
  "$root/containers/$a/config.json")"
fact e2e_a_source "$(findmnt -n -o SOURCE "$ra")"
dmsetup ls | grep sdctr-
fact e2e_active_devices "$(dmsetup ls | grep -c 'sdctr-.*-ctr-' || true)"
consistency | tee /tmp/verdict
fact e2e_consistency "$(sed -n 's/^VERDICT //p' /tmp/verdict)"
# Docker's "device or resource busy": a container's mount copied into a later container's mount
# namespace kept its device open after the first was removed. b, started after a, holds no copy
# of a's mount, and `rm -f` of a while b runs takes a's device at once (nothing deferred)
pb=$(sdctr inspect -f '{{.State.Pid}}' "$b")
fact e2e_b_holds_a "$(grep -c "$a" "/proc/$pb/mountinfo")"
sdctr rm -f "$a" >/dev/null 2>/tmp/rm-a.err
fact e2e_rm_a_status "$?"
cat /tmp/rm-a.err
fact e2e_rm_a_devices "$(dmsetup ls | grep -c -- "-ctr-$a" || true)"
fact e2e_b_after_rm_a "$(sdctr exec "$b" cat /b-file)"
# A process that does hold a copy (a mount namespace made while c's mount was there, as Docker's
# daemon made them, with private propagation: the host's unmount does not reach it) keeps c's
# device open past the unmount; rm still takes the device, as removing c's mount point detaches
# the copies in other namespaces (the kernel since 3.18; RHEL 7's fs.may_detach_mounts=1)
c=$(sdctr run -d busybox sleep 1000)
unshare -m --propagation private sleep 1000 & holder=$!
sleep 1
fact e2e_holder_holds_c "$(grep -c " /run/sdctr/$c/rootfs " "/proc/$holder/mountinfo")"
sdctr rm -f "$c" >/dev/null 2>/tmp/rm-c.err
fact e2e_rm_held_status "$?"
cat /tmp/rm-c.err
fact e2e_rm_held_devices "$(dmsetup ls | grep -c -- "-ctr-$c" || true)"
fact e2e_holder_holds_c_after "$(grep -c " /run/sdctr/$c/rootfs " "/proc/$holder/mountinfo")"
kill "$holder"; wait "$holder" 2>/dev/null
sdctr rm -f "$b" >/dev/null
fact e2e_after_rm_active "$(dmsetup ls | grep -c 'sdctr-.*-ctr-' || true)"
consistency | tee /tmp/verdict
fact e2e_after_rm_consistency "$(sed -n 's/^VERDICT //p' /tmp/verdict)"
took e2e

# --- 3 ------------------------------------------------------------------------------------------
# thin_check needs the pool's metadata at rest: the pool is taken down, checked, and brought
# back by the next sdctr command (which rolls the open transaction back or forward)
# sh has no local variables: its container is $w, so the caller's $c (the delete steps' container,
# removed after it) is not overwritten
check_after() {
  step=$1
  python3 -m sdctr.storage.devicemapper down "$root" || echo "down failed"
  thin_check "$dm/pool/metadata" >/tmp/tc 2>&1
  fact "thin_check_$step" "$?"
  cat /tmp/tc
  python3 -m sdctr.storage.devicemapper up "$root"
  consistency | tee /tmp/verdict
  fact "consistency_$step" "$(sed -n 's/^VERDICT //p' /tmp/verdict)"
  w=$(sdctr run -d busybox sh -c 'echo ok > /ok; sleep 1000')
  sleep 1
  fact "works_$step" "$(cat "/run/sdctr/$w/rootfs/ok" 2>/dev/null)"
  sdctr rm -f "$w" >/dev/null || echo "rm -f $w failed: $?"
}
for step in $steps; do
  name=$(echo "$step" | tr :- __)
  case $step in
    create:*)
      SDCTR_TEST_KILL_AT=$step sdctr create busybox true >/dev/null 2>&1
      fact "killed_$name" "$?"
      check_after "$name"
      for c in $(sdctr ps -aq); do sdctr rm -f "$c" >/dev/null || echo "rm -f $c failed: $?"; done ;;
    delete:*)
      c=$(sdctr create busybox true)
      SDCTR_TEST_KILL_AT=$step sdctr rm "$c" >/dev/null 2>&1
      fact "killed_$name" "$?"
      check_after "$name"
      sdctr rm -f "$c" >/dev/null  # the container whose rm was killed: removed now, after all
      fact "removed_$name" "$?" ;;
    *) echo "thin.sh: no step $step"; exit 2 ;;
  esac
  took "step_$name"
done
consistency | tee /tmp/verdict
fact final_consistency "$(sed -n 's/^VERDICT //p' /tmp/verdict)"
sdctr ps -a
fact final_containers "$(sdctr ps -aq | wc -l)"
