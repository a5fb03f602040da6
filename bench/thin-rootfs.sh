#!/bin/sh
# The VM payload of bench/thin_bench.py (run by tests/vm/vm): time to a container's root file
# system, ready to pivot into, from a 10 MB and a 1 GB image (one layer each: busybox and a file
# of that size), for devicemapper (a thin snapshot of the image's top layer, activated and
# mounted), overlay (a writable directory and the mount) and a plain copy of the unpacked image
# (cp -a, what a copying driver does). The image is unpacked before the clock starts: it is done
# once per image, not per container. Three samples each; prints "BENCH driver size ms ms ms".
# Also `sdctr run --rm IMG true` over devicemapper and overlay (3 each, the 10 MB image).
set -eu
mkdir -p /etc/sdctr
printf 'storage:\n  driver: devicemapper\n  devicemapper:\n    data_size: 6G\n    metadata_size: 128M\n    base_size: 2G\n' \
  > /etc/sdctr/sdctr.yaml
printf 'storage:\n  driver: overlay\n' > /etc/sdctr/overlay.yaml
sh "$SDCTR_TEST_HELPERS/busybox-rootfs.sh" /tmp/bb
for size in 10 1024; do
  rm -rf /tmp/img && cp -a /tmp/bb /tmp/img
  have=$(du -sm /tmp/img | cut -f1)
  head -c $(( (size - have) * 1048576 )) /dev/zero | tr '\0' 'x' > /tmp/img/filler
  tar -C /tmp/img -cf /tmp/img.tar . && rm -rf /tmp/img
  sdctr import /tmp/img.tar "img$size" > /dev/null && rm /tmp/img.tar
done
sdctr images

python3 - <<'EOF'
import os, shutil, subprocess, time
from pathlib import Path

from sdctr.image import store
from sdctr.paths import Paths
from sdctr.storage import snapshotter
from sdctr.storage.devicemapper import DeviceMapperSnapshotter
from sdctr.storage.overlay import OverlaySnapshotter
from sdctr.config import DeviceMapper

paths = Paths.from_root(None)
thin = DeviceMapperSnapshotter(paths, DeviceMapper(data_size=6 << 30, metadata_size=128 << 20, base_size=2 << 30))
over = OverlaySnapshotter(paths)
mnt = Path("/run/sdctr-bench")
copies_dir = Path("/var/lib/sdctr-bench")  # on the disk, beside the layers: /run is a small tmpfs
copies_dir.mkdir(parents=True, exist_ok=True)


def ms(t):
    return str(round((time.perf_counter() - t) * 1000))


def drop():
    subprocess.run(["sync"])
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


for size in (10, 1024):
    image = store.resolve(paths, f"img{size}")
    for snap in (thin, over):
        t = time.perf_counter()
        snap.unpack(image)
        print(f"UNPACK {snap.name} {size} {ms(t)}", flush=True)
    copies = {"devicemapper": [], "overlay": [], "copy": []}
    for i in range(3):
        for snap in (thin, over):
            cid, target = f"bench{size}x{i}{snap.name[0]}", mnt / f"{snap.name}-{size}-{i}"
            drop()
            t = time.perf_counter()
            snap.prepare(cid, image.layers)
            snapshotter.activate(snap, cid, image.layers, target)
            copies[snap.name].append(ms(t))
            snap.deactivate(cid, target)
            snap.remove(cid)
        target = copies_dir / f"copy-{size}-{i}"
        drop()
        t = time.perf_counter()
        subprocess.run(["cp", "-a", str(over.layer_dir(image.layers[-1])), str(target)], check=True)
        copies["copy"].append(ms(t))
        shutil.rmtree(target)
    for name, times in copies.items():
        print(f"BENCH {name} {size} {' '.join(times)}", flush=True)
EOF

run_times() {
  for i in 1 2 3; do
    t=$(date +%s%3N)
    sdctr run --rm --network none img10 true > /dev/null
    echo $(( $(date +%s%3N) - t ))
  done | paste -sd' '
}
echo "BENCH run-rm-devicemapper 10 $(run_times)"
echo "BENCH run-rm-overlay 10 $(SDCTR_CONFIG=/etc/sdctr/overlay.yaml run_times)"
