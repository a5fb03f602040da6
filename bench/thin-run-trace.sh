#!/bin/sh
# The VM payload of bench/thin_run_trace.py (run by tests/vm/vm): where the time of
# `sdctr run --rm IMG true` goes, devicemapper against overlay (the busybox image).
#
#   1. N runs of each, the drivers alternating: "TIMES driver ms" per run, each timed until
#      `sdctr run` returns, the machine then left to settle (no rootfs unit stopping); and 5 runs
#      back to back of each: "BATCH driver ms", their whole time, work left behind included;
#   2. one more run of each with systemd at log level debug, and every rootfs.sh step traced
#      (`sh -x`, its lines in the journal): the journal of that run, "TRACE driver <monotonic
#      seconds> <message>", and the run's own start and end on the same clock ("TRACE driver
#      <s> CLI start|end");
#   3. the pieces on their own: Python's start and the hook's imports, the Python driver's
#      snapshot and delete transactions ("PIECE name ms");
#   4. one run of each under cProfile: the CLI's own functions ("PROFILE driver <line>").
set -u
n=${1:-4} network=${2:-none}  # runs per driver; --network (none: as bench/thin-rootfs.sh)
before=${3:-}  # an older sdctr package directory: its runs and this one's, alternating, and no more
ms() { date +%s%3N; }
mono() { cut -d' ' -f1 /proc/uptime; }

mkdir -p /etc/sdctr
printf 'storage:\n  driver: devicemapper\n  devicemapper:\n    data_size: 512M\n    metadata_size: 64M\n    base_size: 1G\n' \
  > /etc/sdctr/sdctr.yaml
printf 'storage:\n  driver: overlay\n' > /etc/sdctr/overlay.yaml
rm -rf /tmp/bb && sh "$SDCTR_TEST_HELPERS/busybox-rootfs.sh" /tmp/bb
tar -C /tmp/bb -cf /tmp/bb.tar . && sdctr import /tmp/bb.tar busybox >/dev/null || exit 1
# one of each first: the pool up, the image unpacked for both drivers, the caches warm
sdctr run --rm busybox true || exit 1
SDCTR_CONFIG=/etc/sdctr/overlay.yaml sdctr run --rm busybox true || exit 1

settle() {  # until no rootfs unit is active or stopping: a thin --rm's pool transaction runs
  # after its `sdctr run` returned, and would otherwise be timed in the next run (of either driver)
  while [ -n "$(systemctl list-units --no-legend --state=active,activating,deactivating 'sdctr-rootfs@*')" ]; do
    sleep 0.05
  done
}
run() {  # driver: one run, its ms (what the user waits for), then the machine settled
  if [ "$1" = overlay ]; then export SDCTR_CONFIG=/etc/sdctr/overlay.yaml; else unset SDCTR_CONFIG; fi
  t=$(ms)
  sdctr run --rm --network "$network" busybox true >/dev/null || echo "FAILED $1"
  echo $(( $(ms) - t ))
  settle
}
batch() {  # driver k: k runs back to back, the ms of all (what work left behind costs the next)
  if [ "$1" = overlay ]; then export SDCTR_CONFIG=/etc/sdctr/overlay.yaml; else unset SDCTR_CONFIG; fi
  t=$(ms) j=0
  while [ $j -lt "$2" ]; do
    sdctr run --rm --network "$network" busybox true >/dev/null || echo "FAILED $1"
    j=$((j + 1))
  done
  settle
  echo $(( $(ms) - t ))
}
if [ -n "$before" ]; then
  # before/after in one boot: the installed sdctr package swapped for BEFORE's before each pair
  site=$(python3 -c 'import os, sdctr; print(os.path.dirname(os.path.dirname(sdctr.__file__)))')
  rm -rf /root/sdctr-after /root/sdctr-before
  cp -a "$site/sdctr" /root/sdctr-after && cp -a "$before" /root/sdctr-before || exit 1
  # both compiled ahead (git archive's copy has no __pycache__: its first run would compile it)
  python3 -m compileall -q /root/sdctr-after /root/sdctr-before >/dev/null || exit 1
  i=0
  while [ $i -lt "$n" ]; do
    for version in before after; do
      rm -rf "$site/sdctr" && cp -a "/root/sdctr-$version" "$site/sdctr" || exit 1
      echo "TIMES devicemapper-$version $(run devicemapper)"
      echo "TIMES overlay-$version $(run overlay)"
    done
    i=$((i + 1))
  done
  for version in before after; do
    rm -rf "$site/sdctr" && cp -a "/root/sdctr-$version" "$site/sdctr" || exit 1
    echo "BATCH devicemapper-$version $(batch devicemapper 5)"
    echo "BATCH overlay-$version $(batch overlay 5)"
  done
  echo "DONE"
  exit 0
fi
i=0
while [ $i -lt "$n" ]; do
  echo "TIMES devicemapper $(run devicemapper)"
  echo "TIMES overlay $(run overlay)"
  i=$((i + 1))
done
echo "BATCH devicemapper $(batch devicemapper 5)"
echo "BATCH overlay $(batch overlay 5)"

# --- 2: one traced run each ---------------------------------------------------------------------
mkdir -p /etc/systemd/system
sed 's|exec /bin/sh "\$\$ROOTFS_SCRIPT"|exec /bin/sh -x "$$ROOTFS_SCRIPT"|g' \
  /usr/local/lib/systemd/system/sdctr-rootfs@.service > /etc/systemd/system/sdctr-rootfs@.service
systemctl daemon-reload
systemd-analyze log-level debug
for driver in devicemapper overlay; do
  sleep 1
  cursor=$(journalctl -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p')
  if [ "$driver" = overlay ]; then export SDCTR_CONFIG=/etc/sdctr/overlay.yaml; else unset SDCTR_CONFIG; fi
  echo "TRACE $driver $(mono) CLI start"
  sdctr run --rm --network "$network" busybox true >/dev/null
  echo "TRACE $driver $(mono) CLI end"
  settle
  sleep 1
  journalctl -o short-monotonic --no-pager --after-cursor="$cursor" \
    | grep -E 'ctr-|sdctr-rootfs|sdctr\[|sh\[|python' \
    | grep -v -E 'systemd-journald|Got message type|Sent message type|Match .* installed|sd-bus|bus_' \
    | sed "s/^\[ *\([0-9.]*\)\] [^ ]* /TRACE $driver \1 /"
done
systemd-analyze log-level info
rm /etc/systemd/system/sdctr-rootfs@.service && systemctl daemon-reload

# --- 3: pieces ----------------------------------------------------------------------------------
piece() {  # name command...: the median of 3 runs
  name=$1; shift
  for j in 1 2 3; do t=$(ms); "$@" >/dev/null 2>&1; echo $(( $(ms) - t )); done | sort -n | sed -n 2p \
    | sed "s/^/PIECE $name /"
}
piece python-start python3 -c pass
piece python-sdctr-hooks python3 -c 'import sdctr.runtime.hooks, sdctr.__main__'
piece sh-start sh -c :
piece dmsetup-status dmsetup status
piece sync sync /etc/sdctr/sdctr.yaml
python3 - <<'EOF'
import time
from sdctr.config import DeviceMapper
from sdctr.image import store
from sdctr.paths import Paths
from sdctr.storage.devicemapper import DeviceMapperSnapshotter

paths = Paths.from_root(None)
thin = DeviceMapperSnapshotter(paths, DeviceMapper(data_size=512 << 20, metadata_size=64 << 20, base_size=1 << 30))
layers = store.resolve(paths, "busybox").layers
made, removed = [], []
for i in range(3):
    t = time.perf_counter()
    thin.prepare(f"trace{i}", layers)
    made.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    thin.remove(f"trace{i}")
    removed.append((time.perf_counter() - t) * 1000)
print(f"PIECE thin-prepare {sorted(made)[1]:.0f}")
print(f"PIECE thin-remove {sorted(removed)[1]:.0f}")
EOF
# --- 4: the CLI's own time, one profiled run each ------------------------------------------------
for driver in devicemapper overlay; do
  if [ "$driver" = overlay ]; then export SDCTR_CONFIG=/etc/sdctr/overlay.yaml; else unset SDCTR_CONFIG; fi
  python3 -m cProfile -s cumtime -m sdctr run --rm --network "$network" busybox true 2>&1 \
    | sed -n '/ncalls/,$p' | head -45 | sed "s/^/PROFILE $driver /"
done
echo "DONE"
