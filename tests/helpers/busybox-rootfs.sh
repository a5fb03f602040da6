#!/bin/sh
# busybox-rootfs.sh DIR: fills DIR with a tiny root file system, the one every tier's containers
# run: Debian's static busybox (a dynamic one would need libc) and a link for each of its applets,
# /etc/passwd and /etc/group with root, an `app` user (1000, home /home/app) and `nobody`.
#
# One builder for every place that needs it: tests/helpers/rootfs.py runs it on this machine,
# test hosts get it on stdin (`sh -s DIR`), VM payloads find it in $SDCTR_TEST_HELPERS.
set -eu
root=${1:?usage: busybox-rootfs.sh DIR}
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "$busybox is missing (Debian: apt-get install busybox-static)" >&2; exit 1; }

mkdir -p "$root"
chmod 755 "$root"  # a test's temporary directory is 0700: non-root users could not use /
cd "$root"
mkdir -p bin etc root home/app tmp proc sys dev mnt
chmod 1777 tmp
chown 1000:1000 home/app
cp "$busybox" bin/busybox
for applet in $("$busybox" --list); do
  [ -e "bin/$applet" ] || [ -L "bin/$applet" ] || ln -s busybox "bin/$applet"
done
cat > etc/passwd <<'END'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
END
cat > etc/group <<'END'
root:x:0:
wheel:x:10:app
app:x:1000:
users:x:100:app
nogroup:x:65534:
END
