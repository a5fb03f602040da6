# The devicemapper driver's activation and deactivation, run by units/sdctr-rootfs@.service
# (outside the container's device cgroup) without starting Python in the common case:
#
#   sh rootfs.sh up|down ID
#
# with the container's device in the environment, from <root>/containers/ID/rootfs.env (written
# by sdctr at each start: sdctr/runtime/hooks.py write_rootfs_env): ROOTFS_DEVICE and ROOTFS_POOL
# (/dev/mapper paths), ROOTFS_TABLE (the thin target's table), ROOTFS_FSTYPE, ROOTFS_OPTIONS,
# ROOTFS_TARGET (<run>/ID/rootfs), ROOTFS_PYTHON, ROOTFS_STATE, and ROOTFS_FAST ("up", "up down" or
# empty: which of the two this script may do itself).
#
# up: the pool brought up first where it is not (after a reboot, before sdctr-thinpool.service:
# Python's, it has transactions to check); `dmsetup create` unless the device is there; the mount
# unless it is mounted. down: the unmount and `dmsetup remove` (--retry: udev's probe may hold
# the device a moment). Anything else -- an ephemeral container's reset, --rm's deletion (a pool
# transaction), an attached run's exit file, a device mounted elsewhere (export's view), a
# failed step -- goes to the hook (`sdctr hook rootfs-up|rootfs-down ID`), which is idempotent
# and says what is wrong.

op=$1 cid=$2
hook() {
    exec "${ROOTFS_PYTHON:-/usr/bin/python3}" -m sdctr hook "rootfs-$op" "$cid"
}
case " $ROOTFS_FAST " in *" $op "*) ;; *) hook ;; esac
name=${ROOTFS_DEVICE#/dev/mapper/}

if [ "$op" = up ]; then
    [ -b "$ROOTFS_POOL" ] || "$ROOTFS_PYTHON" -m sdctr.storage.devicemapper up "$ROOTFS_STATE" || hook
    [ -b "$ROOTFS_DEVICE" ] || dmsetup create "$name" --table "$ROOTFS_TABLE" || hook
    [ -d "$ROOTFS_TARGET" ] || mkdir -p "$ROOTFS_TARGET" || hook
    mountpoint -q "$ROOTFS_TARGET" && exit 0
    mount -t "$ROOTFS_FSTYPE" ${ROOTFS_OPTIONS:+-o "$ROOTFS_OPTIONS"} "$ROOTFS_DEVICE" "$ROOTFS_TARGET" || hook
    exit 0
fi

if mountpoint -q "$ROOTFS_TARGET"; then
    umount "$ROOTFS_TARGET" || hook
fi
[ -b "$ROOTFS_DEVICE" ] || exit 0
# still mounted elsewhere (`sdctr export` of a stopped container): the hook defers the removal
while read -r source _; do
    [ "$source" != "$ROOTFS_DEVICE" ] || hook
done < /proc/self/mounts
dmsetup remove --retry "$name" || hook
